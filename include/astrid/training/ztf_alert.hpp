#pragma once
// ZTF public alert packets (Avro object container files, schema 3.x; Debian libavro-dev) read into
// plain data, and turned into labelled triplets for /training (`astrid import-ztf`). The packets'
// writer schema is used as found, so schema versions 3.2 (no drb) to 4.x read alike; fields are
// looked up by name.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/training/triplet.hpp"

namespace astrid::training {

/// The candidate fields astrid uses (ZTF names; null or absent optional fields stay empty).
struct ZtfCandidate {
    double jd = 0.0;        ///< Julian date, start of exposure
    int fid = 0;            ///< 1 g, 2 r, 3 i
    std::int64_t pid = 0;
    double ra = 0.0, dec = 0.0;
    double magpsf = 0.0, sigmapsf = 0.0;
    std::string isdiffpos;  ///< "t"/"1" positive, "f"/"0" negative
    std::optional<double> xpos, ypos;  ///< 1-based px on the quadrant image
    std::optional<double> fwhm, elong, scorr, magnr, distnr, sharpnr, magzpsci, diffmaglim, rb, drb;
    std::optional<double> nbad, nneg, field, rcid;
    std::string rbversion, drbversion;
};

struct ZtfAlert {
    std::string source;     ///< "FILE" or "FILE record N" (1-based) when the file holds several
    std::string schemaVersion;
    std::string objectId;
    std::int64_t candid = 0;
    ZtfCandidate candidate;
    std::size_t nPrevious = 0;  ///< prv_candidates entries (0 when null)
    Image<float> science, reference, difference;  ///< the stamps as stored (FITS row 1 = y 0)
};

/// What one Avro file gave: its packets, and one message per packet that could not be read
/// (naming the file, the record and the field). A file that is not Avro gives one message.
struct ZtfFileResult {
    std::vector<ZtfAlert> alerts;
    std::vector<std::string> errors;
};

/// Reads every packet of `path`. Never throws for bad content: a malformed packet is an error
/// entry and the file's other packets are still read (a packet that breaks Avro decoding itself
/// ends that file, since the stream cannot be resynchronised).
ZtfFileResult readZtfAlertFile(const std::string& path);

/// The files an import reads: each argument is a file, or a directory searched recursively for
/// *.avro; sorted, duplicates removed. Throws IoError naming a missing argument.
std::vector<std::string> findAvroFiles(const std::vector<std::string>& inputs);

enum class ZtfScore { Auto, Drb, Rb };  ///< Auto: drb when the packet has it, else rb

struct ZtfImportConfig {
    double threshold = 0.5;   ///< label real when score >= threshold
    ZtfScore score = ZtfScore::Auto;
    SplitFractions split;
};

/// The layout of imported ZTF triplets: science, reference (ZTF's template), difference; 63 x 63;
/// "ztf_stamp_as_distributed"; DN.
TripletLayout ztfLayout();

/// Where a stamp of `stampSize` px goes in a frame of `frameSize` px along one axis (the frame
/// index of the stamp's pixel 0). ZTF cuts stamps short at the CCD edge: a short stamp whose
/// candidate sits within half a frame of the low edge (pos1 < frameSize/2 + 1, 1-based) lost its low
/// side and is aligned to the frame's high side; otherwise to the low side. A long stamp is centred.
int ztfStampOffset(int stampSize, int frameSize, std::optional<double> pos1);

/// The labelled triplet of one packet: score and label_source from `config` (ztf_drb or ztf_rb),
/// split by the objectId. Throws DataError naming the packet and field when the score asked for is
/// absent or a stamp is missing.
Triplet ztfTriplet(const ZtfAlert& alert, const ZtfImportConfig& config);

}  // namespace astrid::training
