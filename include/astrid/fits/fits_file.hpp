#pragma once
// cfitsio behind RAII. cfitsio never appears in this header (the handle is an opaque pointer).
// HDU indices are 0-based here (0 = primary); the FITS/cfitsio 1-based numbering stays inside
// fits_file.cpp. Every error is a FitsError naming the file and HDU.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/fits/header.hpp"

namespace astrid::fits {

/// Which HDU to read: by 0-based index, by EXTNAME (case-insensitive, optional EXTVER), or the
/// first HDU that holds an image (the primary when it has data, else the first image extension).
struct HduSelector {
    std::optional<int> index;
    std::string extname;
    bool isDefault() const noexcept { return !index && extname.empty(); }
    std::string describe() const;
};

/// Splits "file.fits[SCI]", "file.fits[1]" or "file.fits.gz" into path and selector.
/// A name whose bracket is not a trailing [index] / [EXTNAME] is treated as a plain path.
std::pair<std::string, HduSelector> parseImageSpec(std::string_view spec);

enum class OpenMode { ReadOnly, ReadWrite };

/// Storage type for written images; images are always read as float or double.
enum class PixelType { Float32, Float64, Int16, Int32, UInt8 };

/// What the FITS DATASUM/CHECKSUM keywords of a file say about it.
struct ChecksumReport {
    int hdus = 0;          ///< HDUs examined
    int withChecksum = 0;  ///< HDUs carrying DATASUM or CHECKSUM
    std::string problem;   ///< empty when every present checksum verifies; else which HDU and key fail
};

/// Verifies the DATASUM and CHECKSUM keywords of every HDU of a file (cfitsio fits_verify_chksum).
/// HDUs without them are counted, not failed: many archives write none. Throws FitsError when
/// the file cannot be read as FITS at all (a truncated or non-FITS download).
ChecksumReport verifyChecksums(const std::string& path);

class FitsFile {
public:
    /// Opens an existing file (gzip-compressed files read transparently). Throws FitsError.
    static FitsFile open(const std::string& path, OpenMode mode = OpenMode::ReadOnly);
    /// Creates a new file, replacing an existing one. Throws FitsError.
    static FitsFile create(const std::string& path);
    /// Opens a FITS file held in memory, read-only (e.g. a stamp inside an alert packet); gzip
    /// (magic 1f 8b) is inflated first. `name` stands in for the path in errors. Throws FitsError
    /// naming `name` when the bytes are not a (gzipped) FITS file.
    static FitsFile openMemory(std::vector<unsigned char> bytes, const std::string& name);

    FitsFile(FitsFile&&) noexcept;
    FitsFile& operator=(FitsFile&&) noexcept;
    FitsFile(const FitsFile&) = delete;
    FitsFile& operator=(const FitsFile&) = delete;
    ~FitsFile();  ///< closes without throwing; a failed close is logged

    const std::string& path() const noexcept { return path_; }
    int hduCount() const;
    /// 0-based index of the current HDU.
    int currentHdu() const;
    void moveTo(int index);
    /// Moves to the HDU chosen by `sel`; throws FitsError listing what the file has when none fits.
    void select(const HduSelector& sel);
    /// Finds an HDU by EXTNAME (case-insensitive) without moving; nullopt when absent.
    std::optional<int> findExtension(std::string_view extname) const;

    /// Header of the current HDU.
    Header readHeader() const;
    /// NAXISn of the current HDU (empty for a header-only HDU).
    std::vector<long> imageShape() const;
    /// Image of the current HDU as float: any BITPIX, BSCALE/BZERO applied, BLANK -> NaN.
    /// Throws FitsError when the HDU is not a 2-D image (3-D with NAXIS3 == 1 is accepted).
    Image<float> readImageFloat() const;
    Image<double> readImageDouble() const;

    /// Appends an image HDU (the primary when the file is empty) with the extra header cards.
    void writeImage(const Image<float>& image, const Header& extra = {}, PixelType type = PixelType::Float32);
    void writeImage(const Image<double>& image, const Header& extra = {}, PixelType type = PixelType::Float64);
    void writeImage(const Image<std::uint16_t>& image, const Header& extra = {});

    /// Closes now, throwing FitsError on failure (e.g. a full disk).
    void close();

private:
    friend ChecksumReport verifyChecksums(const std::string& path);
    FitsFile(void* handle, std::string path) : handle_(handle), path_(std::move(path)) {}
    FitsFile(void* handle, std::string path, std::shared_ptr<void> memory)
        : handle_(handle), path_(std::move(path)), memory_(std::move(memory)) {}
    template <class T>
    Image<T> readImageAs(int datatype) const;
    void writeHeaderCards(const Header& extra);
    [[noreturn]] void fail(int status, const std::string& what) const;

    void* handle_ = nullptr;  // fitsfile*
    std::string path_;
    std::shared_ptr<void> memory_;  // the bytes of a memory file; freed after the handle is closed
};

/// One image with its header and where it came from.
struct ImageHdu {
    Image<float> image;
    Header header;
    std::string path;
    int hdu = 0;  ///< 0-based
};

/// Reads the image selected by `spec` ("file.fits", "file.fits[SCI]", "file.fits[2]").
ImageHdu readImage(const std::string& spec);

/// Reads an image and the auxiliary planes a file may carry beside it: a mask (EXTNAME MASK, DQ or
/// BPM; non-zero = Bad), a variance (VARIANCE/VAR), a weight (WEIGHT/WHT, variance = 1/weight) or an
/// error (ERR/SIGMA, variance = err^2). Missing planes stay empty.
struct ImagePlanes {
    ImageHdu science;
    Image<float> variance;        ///< empty when the file has none
    Image<std::uint16_t> mask;    ///< empty when the file has none
};
ImagePlanes readImagePlanes(const std::string& spec);

}  // namespace astrid::fits
