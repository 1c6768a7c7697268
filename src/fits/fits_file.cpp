// The only translation unit that includes fitsio.h: cfitsio status codes become FitsError here.
#include "astrid/fits/fits_file.hpp"

#include <fitsio.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/text.hpp"

namespace astrid::fits {
namespace {
fitsfile* F(void* h) { return static_cast<fitsfile*>(h); }

std::string statusText(int status) {
    char buf[FLEN_STATUS] = {0};
    fits_get_errstatus(status, buf);
    std::string msg = buf;
    // The cfitsio message stack holds the detail (e.g. which keyword); drain it into the message.
    char detail[FLEN_ERRMSG];
    std::string stack;
    std::size_t lastLen = 0;
    while (fits_read_errmsg(detail)) {
        // cfitsio splits long messages into 80-character pieces: rejoin those seamlessly.
        if (!stack.empty() && lastLen < 80) stack += "; ";
        stack += detail;
        lastLen = std::strlen(detail);
    }
    if (!stack.empty()) msg += " (" + stack + ")";
    return msg + " [cfitsio status " + std::to_string(status) + "]";
}
}  // namespace

std::string HduSelector::describe() const {
    if (index) return "HDU " + std::to_string(*index);
    if (!extname.empty()) return "EXTNAME " + extname;
    return "first image HDU";
}

std::pair<std::string, HduSelector> parseImageSpec(std::string_view spec) {
    HduSelector sel;
    if (!spec.empty() && spec.back() == ']') {
        const auto open = spec.rfind('[');
        if (open != std::string_view::npos && open > 0) {
            const std::string inner(text::trim(spec.substr(open + 1, spec.size() - open - 2)));
            if (!inner.empty() && inner.find_first_of("[]:,*") == std::string::npos) {
                if (inner.find_first_not_of("0123456789") == std::string::npos)
                    sel.index = std::stoi(inner);
                else
                    sel.extname = inner;
                return {std::string(spec.substr(0, open)), sel};
            }
        }
    }
    return {std::string(spec), sel};
}

void FitsFile::fail(int status, const std::string& what) const {
    int hdu = -1;
    if (handle_) {
        int num = 0;
        fits_get_hdu_num(F(handle_), &num);
        hdu = num - 1;
    }
    throw FitsError(what + ": " + statusText(status), path_, hdu);
}

FitsFile FitsFile::open(const std::string& path, OpenMode mode) {
    fitsfile* f = nullptr;
    int status = 0;
    // fits_open_diskfile: the name is a plain path; no cfitsio extended-filename syntax surprises.
    fits_open_diskfile(&f, path.c_str(), mode == OpenMode::ReadOnly ? READONLY : READWRITE, &status);
    if (status) throw FitsError("cannot open FITS file: " + statusText(status), path);
    return FitsFile(f, path);
}

FitsFile FitsFile::create(const std::string& path) {
    fitsfile* f = nullptr;
    int status = 0;
    const std::string clobber = "!" + path;  // '!' = overwrite an existing file
    fits_create_file(&f, clobber.c_str(), &status);
    if (status) throw FitsError("cannot create FITS file: " + statusText(status), path);
    return FitsFile(f, path);
}

namespace {
// The bytes of a memory file and the two words cfitsio keeps pointers to (they must not move).
struct MemoryFile {
    std::vector<unsigned char> bytes;
    void* ptr = nullptr;
    std::size_t size = 0;
};

std::vector<unsigned char> gunzip(const std::vector<unsigned char>& in, const std::string& name) {
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw FitsError("cannot initialise zlib", name);
    std::vector<unsigned char> out(std::max<std::size_t>(in.size() * 4, 2880));
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (zs.total_out == out.size()) out.resize(out.size() * 2);
        zs.next_out = out.data() + zs.total_out;
        zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) break;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;  // truncated input
    }
    const std::string msg = zs.msg ? zs.msg : "";
    const std::size_t total = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END)
        throw FitsError("corrupt or truncated gzip data" + (msg.empty() ? std::string() : " (" + msg + ")"), name);
    out.resize(total);
    return out;
}
}  // namespace

FitsFile FitsFile::openMemory(std::vector<unsigned char> bytes, const std::string& name) {
    if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) bytes = gunzip(bytes, name);
    if (bytes.size() < 2880 || std::memcmp(bytes.data(), "SIMPLE  =", 9) != 0)
        throw FitsError("not a FITS file (" + std::to_string(bytes.size()) + " bytes, no SIMPLE card)", name);
    auto mem = std::make_shared<MemoryFile>();
    mem->bytes = std::move(bytes);
    mem->ptr = mem->bytes.data();
    mem->size = mem->bytes.size();
    fitsfile* f = nullptr;
    int status = 0;
    fits_open_memfile(&f, name.c_str(), READONLY, &mem->ptr, &mem->size, 0, nullptr, &status);
    if (status) throw FitsError("cannot open FITS data in memory: " + statusText(status), name);
    return FitsFile(f, name, std::move(mem));
}

FitsFile::FitsFile(FitsFile&& o) noexcept
    : handle_(o.handle_), path_(std::move(o.path_)), memory_(std::move(o.memory_)) {
    o.handle_ = nullptr;
}

FitsFile& FitsFile::operator=(FitsFile&& o) noexcept {
    if (this != &o) {
        if (handle_) {
            int status = 0;
            fits_close_file(F(handle_), &status);
        }
        handle_ = o.handle_;
        path_ = std::move(o.path_);
        memory_ = std::move(o.memory_);
        o.handle_ = nullptr;
    }
    return *this;
}

FitsFile::~FitsFile() {
    if (!handle_) return;
    int status = 0;
    fits_close_file(F(handle_), &status);
    if (status) log::get("astrid.fits")->warn("{}: closing failed: {}", path_, statusText(status));
}

void FitsFile::close() {
    if (!handle_) return;
    int status = 0;
    fits_close_file(F(handle_), &status);
    handle_ = nullptr;
    if (status) throw FitsError("closing failed: " + statusText(status), path_);
}

int FitsFile::hduCount() const {
    int n = 0, status = 0;
    if (fits_get_num_hdus(F(handle_), &n, &status)) fail(status, "cannot count HDUs");
    return n;
}

int FitsFile::currentHdu() const {
    int n = 0;
    fits_get_hdu_num(F(handle_), &n);
    return n - 1;
}

void FitsFile::moveTo(int index) {
    int status = 0, type = 0;
    const int n = hduCount();
    if (index < 0 || index >= n)
        throw FitsError("HDU " + std::to_string(index) + " requested but the file has " + std::to_string(n) +
                            " HDU(s) (0-based)",
                        path_);
    if (fits_movabs_hdu(F(handle_), index + 1, &type, &status)) fail(status, "cannot move to HDU");
}

std::optional<int> FitsFile::findExtension(std::string_view extname) const {
    const int here = currentHdu();
    const int n = hduCount();
    std::optional<int> found;
    const std::string want = text::toUpper(extname);
    for (int i = 0; i < n && !found; ++i) {
        int status = 0, type = 0;
        if (fits_movabs_hdu(F(handle_), i + 1, &type, &status)) break;
        char value[FLEN_VALUE] = {0};
        status = 0;
        fits_read_key(F(handle_), TSTRING, "EXTNAME", value, nullptr, &status);
        if (status == 0 && text::toUpper(text::trim(value)) == want) found = i;
    }
    int status = 0, type = 0;
    fits_movabs_hdu(F(handle_), here + 1, &type, &status);
    return found;
}

void FitsFile::select(const HduSelector& sel) {
    if (sel.index) {
        moveTo(*sel.index);
        return;
    }
    if (!sel.extname.empty()) {
        auto idx = findExtension(sel.extname);
        if (!idx) throw FitsError("no HDU with EXTNAME '" + sel.extname + "'", path_);
        moveTo(*idx);
        return;
    }
    const int n = hduCount();
    for (int i = 0; i < n; ++i) {
        moveTo(i);
        int type = 0, status = 0;
        fits_get_hdu_type(F(handle_), &type, &status);
        if (type != IMAGE_HDU) continue;
        const auto shape = imageShape();
        if (shape.size() >= 2 && shape[0] > 0 && shape[1] > 0) return;
    }
    throw FitsError("the file has no image HDU with at least 2 axes (" + std::to_string(n) + " HDU(s))", path_);
}

Header FitsFile::readHeader() const {
    Header h(path_ + "[" + std::to_string(currentHdu()) + "]");
    int status = 0, nkeys = 0;
    if (fits_get_hdrspace(F(handle_), &nkeys, nullptr, &status)) fail(status, "cannot read header size");
    for (int i = 1; i <= nkeys; ++i) {
        char card[FLEN_CARD] = {0};
        char key[FLEN_KEYWORD] = {0};
        char value[FLEN_VALUE] = {0};
        char comment[FLEN_COMMENT] = {0};
        int keylen = 0;
        status = 0;
        if (fits_read_record(F(handle_), i, card, &status)) fail(status, "cannot read header card " + std::to_string(i));
        fits_get_keyname(card, key, &keylen, &status);
        Card c;
        c.key = key;
        if (c.key == "COMMENT" || c.key == "HISTORY" || c.key.empty()) {
            c.value = std::strlen(card) > 8 ? std::string(card + 8) : std::string();
            h.append(std::move(c));
            continue;
        }
        status = 0;
        fits_parse_value(card, value, comment, &status);
        if (status) {
            // Keep going: one malformed card must not hide the rest. Typed reads of it will fail
            // with this card's text in the message.
            c.value = std::strlen(card) > 10 ? std::string(card + 10) : std::string();
            status = 0;
        } else {
            std::string v = value;
            if (!v.empty() && v.front() == '\'') {
                c.isString = true;
                char unq[FLEN_VALUE] = {0};
                fits_read_key_str(F(handle_), key, unq, nullptr, &status);  // unquotes and handles ''
                v = status ? v.substr(1, v.size() >= 2 ? v.size() - 2 : 0) : std::string(unq);
                status = 0;
                while (!v.empty() && v.back() == ' ') v.pop_back();
            }
            c.value = v;
            c.comment = comment;
        }
        h.append(std::move(c));
    }
    return h;
}

std::vector<long> FitsFile::imageShape() const {
    int status = 0, naxis = 0;
    if (fits_get_img_dim(F(handle_), &naxis, &status)) fail(status, "cannot read NAXIS");
    std::vector<long> shape(static_cast<std::size_t>(naxis));
    if (naxis > 0 && fits_get_img_size(F(handle_), naxis, shape.data(), &status)) fail(status, "cannot read NAXISn");
    return shape;
}

template <class T>
Image<T> FitsFile::readImageAs(int datatype) const {
    int type = 0, status = 0;
    fits_get_hdu_type(F(handle_), &type, &status);
    if (type != IMAGE_HDU) fail(NOT_IMAGE, "HDU is a table, not an image");
    auto shape = imageShape();
    if (shape.size() == 3 && shape[2] == 1) shape.pop_back();
    if (shape.size() != 2)
        throw FitsError("expected a 2-D image, found NAXIS = " + std::to_string(shape.size()), path_, currentHdu());
    if (shape[0] <= 0 || shape[1] <= 0 || shape[0] > std::numeric_limits<int>::max() / 4 ||
        shape[1] > std::numeric_limits<int>::max() / 4)
        throw FitsError("implausible image size " + std::to_string(shape[0]) + " x " + std::to_string(shape[1]), path_,
                        currentHdu());
    Image<T> img(static_cast<int>(shape[0]), static_cast<int>(shape[1]), Uninitialized{});  // cfitsio fills it
    const T nullValue = std::numeric_limits<T>::quiet_NaN();
    int anyNull = 0;
    // cfitsio applies BSCALE/BZERO and maps BLANK to nullValue.
    if (fits_read_img(F(handle_), datatype, 1, static_cast<LONGLONG>(img.size()), const_cast<T*>(&nullValue),
                      img.data(), &anyNull, &status))
        fail(status, "cannot read image data (truncated or corrupt file?)");
    return img;
}

Image<float> FitsFile::readImageFloat() const { return readImageAs<float>(TFLOAT); }
Image<double> FitsFile::readImageDouble() const { return readImageAs<double>(TDOUBLE); }

void FitsFile::writeHeaderCards(const Header& extra) {
    static const char* kReserved[] = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
                                      "XTENSION", "PCOUNT", "GCOUNT", "END", "BZERO", "BSCALE"};
    for (const Card& c : extra.cards()) {
        bool reserved = false;
        for (const char* r : kReserved) reserved = reserved || c.key == r;
        if (reserved) continue;
        int status = 0;
        if (c.key == "COMMENT") {
            fits_write_comment(F(handle_), c.value.c_str(), &status);
        } else if (c.key == "HISTORY") {
            fits_write_history(F(handle_), c.value.c_str(), &status);
        } else if (c.isString) {
            fits_update_key_longstr(F(handle_), c.key.c_str(), c.value.c_str(),
                                    c.comment.empty() ? nullptr : c.comment.c_str(), &status);
        } else {
            std::string card = c.key;
            card.resize(8, ' ');
            std::string v = c.value;
            if (v.size() < 20) v.insert(0, 20 - v.size(), ' ');
            card += "= " + v;
            if (!c.comment.empty()) card += " / " + c.comment;
            if (card.size() > 80) card.resize(80);
            fits_update_card(F(handle_), c.key.c_str(), card.c_str(), &status);
        }
        if (status) fail(status, "cannot write header key " + c.key);
    }
}

namespace {
template <class T>
void writeImpl(void* h, const Image<T>& image, int bitpix, int datatype, int& status) {
    long naxes[2] = {image.width(), image.height()};
    // An empty image becomes a header-only HDU (NAXIS = 0), like an HST/JWST primary.
    fits_create_img(F(h), bitpix, image.empty() ? 0 : 2, naxes, &status);
    if (status || image.empty()) return;
    fits_write_img(F(h), datatype, 1, static_cast<LONGLONG>(image.size()), const_cast<T*>(image.data()), &status);
}

int bitpixOf(PixelType t) {
    switch (t) {
        case PixelType::Float32: return FLOAT_IMG;
        case PixelType::Float64: return DOUBLE_IMG;
        case PixelType::Int16: return SHORT_IMG;
        case PixelType::Int32: return LONG_IMG;
        case PixelType::UInt8: return BYTE_IMG;
    }
    return FLOAT_IMG;
}
}  // namespace

void FitsFile::writeImage(const Image<float>& image, const Header& extra, PixelType type) {
    int status = 0;
    writeImpl(handle_, image, bitpixOf(type), TFLOAT, status);
    if (status) fail(status, "cannot write image");
    writeHeaderCards(extra);
}

void FitsFile::writeImage(const Image<double>& image, const Header& extra, PixelType type) {
    int status = 0;
    writeImpl(handle_, image, bitpixOf(type), TDOUBLE, status);
    if (status) fail(status, "cannot write image");
    writeHeaderCards(extra);
}

void FitsFile::writeImage(const Image<std::uint16_t>& image, const Header& extra) {
    int status = 0;
    writeImpl(handle_, image, USHORT_IMG, TUSHORT, status);
    if (status) fail(status, "cannot write image");
    writeHeaderCards(extra);
}

ImageHdu readImage(const std::string& spec) {
    auto [path, sel] = parseImageSpec(spec);
    FitsFile f = FitsFile::open(path);
    f.select(sel);
    ImageHdu out;
    out.path = path;
    out.hdu = f.currentHdu();
    out.header = f.readHeader();
    out.image = f.readImageFloat();
    return out;
}

ImagePlanes readImagePlanes(const std::string& spec) {
    const auto parsed = parseImageSpec(spec);
    const std::string& path = parsed.first;  // a plain variable: the lambda below captures it
    const HduSelector& sel = parsed.second;
    FitsFile f = FitsFile::open(path);
    f.select(sel);
    ImagePlanes out;
    out.science.path = path;
    out.science.hdu = f.currentHdu();
    out.science.header = f.readHeader();
    out.science.image = f.readImageFloat();
    const int w = out.science.image.width();
    const int h = out.science.image.height();
    auto plane = [&](std::initializer_list<const char*> names) -> std::optional<Image<float>> {
        for (const char* n : names) {
            auto idx = f.findExtension(n);
            if (!idx || *idx == out.science.hdu) continue;
            f.moveTo(*idx);
            Image<float> img = f.readImageFloat();
            if (img.width() != w || img.height() != h)
                throw FitsError(std::string(n) + " plane is " + std::to_string(img.width()) + "x" +
                                    std::to_string(img.height()) + ", the image is " + std::to_string(w) + "x" +
                                    std::to_string(h),
                                path, *idx);
            return img;
        }
        return std::nullopt;
    };
    if (auto v = plane({"VARIANCE", "VAR"})) {
        out.variance = std::move(*v);
    } else if (auto wt = plane({"WEIGHT", "WHT"})) {
        out.variance = Image<float>(w, h, Uninitialized{});
        for (std::size_t i = 0; i < wt->size(); ++i) {
            const float x = wt->data()[i];
            out.variance.data()[i] = x > 0.0f ? 1.0f / x : std::numeric_limits<float>::infinity();
        }
    } else if (auto e = plane({"ERR", "SIGMA"})) {
        out.variance = Image<float>(w, h, Uninitialized{});
        for (std::size_t i = 0; i < e->size(); ++i) out.variance.data()[i] = e->data()[i] * e->data()[i];
    }
    if (auto m = plane({"MASK", "DQ", "BPM"})) {
        out.mask = Image<std::uint16_t>(w, h, 0);
        for (std::size_t i = 0; i < m->size(); ++i)
            out.mask.data()[i] = m->data()[i] != 0.0f ? bits(MaskBit::Bad) : std::uint16_t{0};
    }
    return out;
}

ChecksumReport verifyChecksums(const std::string& path) {
    auto f = FitsFile::open(path);
    fitsfile* fp = F(f.handle_);
    ChecksumReport r;
    int n = 0, status = 0;
    if (fits_get_num_hdus(fp, &n, &status)) f.fail(status, "cannot count the HDUs");
    for (int i = 1; i <= n; ++i) {
        int type = 0;
        if (fits_movabs_hdu(fp, i, &type, &status)) f.fail(status, "cannot move to HDU " + std::to_string(i - 1));
        int dataOk = 0, hduOk = 0;  // 1 correct, 0 keyword absent, -1 wrong
        if (fits_verify_chksum(fp, &dataOk, &hduOk, &status)) f.fail(status, "cannot verify checksums");
        ++r.hdus;
        if (dataOk != 0 || hduOk != 0) ++r.withChecksum;
        if (r.problem.empty() && (dataOk < 0 || hduOk < 0))
            r.problem = "HDU " + std::to_string(i - 1) + ": " + (dataOk < 0 ? "DATASUM" : "CHECKSUM") +
                        " does not match the bytes (corrupted file)";
    }
    return r;
}

}  // namespace astrid::fits
