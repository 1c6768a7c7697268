// The only translation unit that includes avro.h: Avro status codes become DataError here.
#include "astrid/training/ztf_alert.hpp"

#include <avro.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/fits/fits_file.hpp"

namespace astrid::training {
namespace {
namespace fs = std::filesystem;

std::string avroMessage() {
    const char* m = avro_strerror();
    return (m && *m) ? m : "no detail from libavro";
}

// One Avro record (a packet or a nested record) and where it is, for messages.
class Record {
public:
    Record(avro_value_t value, std::string where, std::string prefix)
        : value_(value), where_(std::move(where)), prefix_(std::move(prefix)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw DataError(where_ + ": field '" + prefix_ + field + "' " + what);
    }

    // The field's value with a union resolved to its branch; nullopt when the schema lacks the
    // field or its value is null.
    std::optional<avro_value_t> get(const char* name) const {
        avro_value_t f;
        if (avro_value_get_by_name(&value_, name, &f, nullptr) != 0) return std::nullopt;
        if (avro_value_get_type(&f) == AVRO_UNION) {
            avro_value_t branch;
            if (avro_value_get_current_branch(&f, &branch) != 0) fail(name, "has no union branch set");
            f = branch;
        }
        if (avro_value_get_type(&f) == AVRO_NULL) return std::nullopt;
        return f;
    }
    avro_value_t require(const char* name) const {
        auto f = get(name);
        if (!f) fail(name, "is missing or null");
        return *f;
    }

    std::optional<double> number(const char* name) const {
        auto f = get(name);
        if (!f) return std::nullopt;
        return toNumber(*f, name);
    }
    double requireNumber(const char* name) const { return toNumber(require(name), name); }
    // Integers exactly (a 19-digit candid does not survive a trip through double).
    std::optional<std::int64_t> integer(const char* name) const {
        auto f = get(name);
        if (!f) return std::nullopt;
        if (avro_value_get_type(&*f) == AVRO_INT64) {
            std::int64_t v = 0;
            avro_value_get_long(&*f, &v);
            return v;
        }
        if (avro_value_get_type(&*f) == AVRO_INT32) {
            std::int32_t v = 0;
            avro_value_get_int(&*f, &v);
            return v;
        }
        fail(name, "is not an integer");
    }
    std::int64_t requireInteger(const char* name) const {
        auto v = integer(name);
        if (!v) fail(name, "is missing or null");
        return *v;
    }

    std::optional<std::string> string(const char* name) const {
        auto f = get(name);
        if (!f) return std::nullopt;
        if (avro_value_get_type(&*f) != AVRO_STRING) fail(name, "is not a string");
        const char* s = nullptr;
        std::size_t n = 0;
        avro_value_get_string(&*f, &s, &n);
        return std::string(s ? s : "", n > 0 ? n - 1 : 0);  // n counts the NUL
    }
    std::string requireString(const char* name) const {
        auto s = string(name);
        if (!s) fail(name, "is missing or null");
        return *s;
    }

    Record record(const char* name) const {
        const avro_value_t f = require(name);
        if (avro_value_get_type(&f) != AVRO_RECORD) fail(name, "is not a record");
        return Record(f, where_, prefix_ + name + ".");
    }
    std::optional<Record> optionalRecord(const char* name) const {
        auto f = get(name);
        if (!f) return std::nullopt;
        if (avro_value_get_type(&*f) != AVRO_RECORD) fail(name, "is not a record");
        return Record(*f, where_, prefix_ + name + ".");
    }
    std::vector<unsigned char> bytes(const char* name) const {
        const avro_value_t f = require(name);
        if (avro_value_get_type(&f) != AVRO_BYTES) fail(name, "is not bytes");
        const void* p = nullptr;
        std::size_t n = 0;
        avro_value_get_bytes(&f, &p, &n);
        const auto* b = static_cast<const unsigned char*>(p);
        return std::vector<unsigned char>(b, b + n);
    }
    std::size_t arraySize(const char* name) const {
        auto f = get(name);
        if (!f) return 0;
        if (avro_value_get_type(&*f) != AVRO_ARRAY) fail(name, "is not an array");
        std::size_t n = 0;
        avro_value_get_size(&*f, &n);
        return n;
    }
    const std::string& where() const { return where_; }
    const std::string& prefix() const { return prefix_; }

private:
    double toNumber(avro_value_t f, const char* name) const {
        switch (avro_value_get_type(&f)) {
            case AVRO_INT32: {
                std::int32_t v = 0;
                avro_value_get_int(&f, &v);
                return v;
            }
            case AVRO_INT64: {
                std::int64_t v = 0;
                avro_value_get_long(&f, &v);
                return static_cast<double>(v);
            }
            case AVRO_FLOAT: {
                float v = 0;
                avro_value_get_float(&f, &v);
                return v;
            }
            case AVRO_DOUBLE: {
                double v = 0;
                avro_value_get_double(&f, &v);
                return v;
            }
            default: fail(name, "is not a number");
        }
    }
    avro_value_t value_;
    std::string where_;
    std::string prefix_;
};

Image<float> readStamp(const Record& packet, const char* name) {
    auto cutout = packet.optionalRecord(name);
    if (!cutout) packet.fail(name, "is missing or null (no stamp)");
    const std::string fileName = cutout->string("fileName").value_or("");
    const std::string what = packet.where() + ": " + name + (fileName.empty() ? "" : " (" + fileName + ")");
    try {
        fits::FitsFile f = fits::FitsFile::openMemory(cutout->bytes("stampData"), what);
        return f.readImageFloat();
    } catch (const FitsError& e) {
        throw DataError(std::string(e.what()));
    }
}

ZtfAlert readPacket(avro_value_t value, const std::string& where) {
    const Record packet(value, where, "");
    ZtfAlert a;
    a.source = where;
    a.schemaVersion = packet.string("schemavsn").value_or("");
    a.objectId = packet.requireString("objectId");
    if (a.objectId.empty()) packet.fail("objectId", "is empty");
    a.candid = packet.requireInteger("candid");
    const Record c = packet.record("candidate");
    ZtfCandidate& k = a.candidate;
    k.jd = c.requireNumber("jd");
    k.fid = static_cast<int>(c.requireInteger("fid"));
    k.pid = c.integer("pid").value_or(0);
    k.ra = c.requireNumber("ra");
    k.dec = c.requireNumber("dec");
    if (!(k.ra >= 0.0 && k.ra < 360.0)) c.fail("ra", "is outside [0, 360): " + std::to_string(k.ra));
    if (!(k.dec >= -90.0 && k.dec <= 90.0)) c.fail("dec", "is outside [-90, 90]: " + std::to_string(k.dec));
    if (!(k.jd > 2400000.0 && k.jd < 2600000.0)) c.fail("jd", "is not a plausible Julian date: " + std::to_string(k.jd));
    k.magpsf = c.requireNumber("magpsf");
    k.sigmapsf = c.requireNumber("sigmapsf");
    k.isdiffpos = c.requireString("isdiffpos");
    k.xpos = c.number("xpos");
    k.ypos = c.number("ypos");
    k.fwhm = c.number("fwhm");
    k.elong = c.number("elong");
    k.scorr = c.number("scorr");
    k.magnr = c.number("magnr");
    k.distnr = c.number("distnr");
    k.sharpnr = c.number("sharpnr");
    k.magzpsci = c.number("magzpsci");
    k.diffmaglim = c.number("diffmaglim");
    k.rb = c.number("rb");
    k.drb = c.number("drb");
    k.nbad = c.number("nbad");
    k.nneg = c.number("nneg");
    k.field = c.number("field");
    k.rcid = c.number("rcid");
    k.rbversion = c.string("rbversion").value_or("");
    k.drbversion = c.string("drbversion").value_or("");
    a.nPrevious = packet.arraySize("prv_candidates");
    a.science = readStamp(packet, "cutoutScience");
    a.reference = readStamp(packet, "cutoutTemplate");
    a.difference = readStamp(packet, "cutoutDifference");
    return a;
}

// Owners of the libavro handles of one file (destroyed in reverse order).
struct AvroFile {
    avro_file_reader_t reader = nullptr;
    avro_schema_t schema = nullptr;
    avro_value_iface_t* iface = nullptr;
    avro_value_t value{};
    bool hasValue = false;
    ~AvroFile() {
        if (hasValue) avro_value_decref(&value);
        if (iface) avro_value_iface_decref(iface);
        if (schema) avro_schema_decref(schema);
        if (reader) avro_file_reader_close(reader);
    }
};
}  // namespace

ZtfFileResult readZtfAlertFile(const std::string& path) {
    ZtfFileResult out;
    AvroFile f;
    if (!fs::is_regular_file(path)) {
        out.errors.push_back(path + ": not a readable file");
        return out;
    }
    if (avro_file_reader(path.c_str(), &f.reader) != 0) {
        f.reader = nullptr;
        out.errors.push_back(path + ": not an Avro object container file (" + avroMessage() + ")");
        return out;
    }
    f.schema = avro_file_reader_get_writer_schema(f.reader);
    if (!f.schema || !is_avro_record(f.schema)) {
        out.errors.push_back(path + ": the Avro writer schema is not a record (not a ZTF alert)");
        return out;
    }
    f.iface = avro_generic_class_from_schema(f.schema);
    if (!f.iface || avro_generic_value_new(f.iface, &f.value) != 0) {
        out.errors.push_back(path + ": cannot build a reader for its schema (" + avroMessage() + ")");
        return out;
    }
    f.hasValue = true;
    std::vector<ZtfAlert> alerts;
    std::size_t record = 0;
    for (;;) {
        avro_value_reset(&f.value);
        const int rc = avro_file_reader_read_value(f.reader, &f.value);
        if (rc == EOF) break;
        ++record;
        if (rc != 0) {
            out.errors.push_back(path + " record " + std::to_string(record) + ": Avro decoding failed (" +
                                 avroMessage() + "); the rest of the file is skipped");
            break;
        }
        try {
            alerts.push_back(readPacket(f.value, path + " record " + std::to_string(record)));
        } catch (const Error& e) {
            out.errors.push_back(e.what());
        }
    }
    // A file of one packet is named by its path alone.
    if (record == 1)
        for (ZtfAlert& a : alerts) a.source = path;
    out.alerts = std::move(alerts);
    return out;
}

std::vector<std::string> findAvroFiles(const std::vector<std::string>& inputs) {
    std::set<std::string> files;
    for (const std::string& in : inputs) {
        std::error_code ec;
        if (fs::is_directory(in, ec)) {
            for (auto it = fs::recursive_directory_iterator(in, fs::directory_options::skip_permission_denied, ec);
                 it != fs::recursive_directory_iterator(); it.increment(ec)) {
                if (ec) throw IoError(in + ": cannot list (" + ec.message() + ")");
                if (it->is_regular_file() && it->path().extension() == ".avro") files.insert(it->path().string());
            }
            if (ec) throw IoError(in + ": cannot list (" + ec.message() + ")");
        } else if (fs::exists(in, ec)) {
            files.insert(in);
        } else {
            throw IoError(in + ": no such file or directory");
        }
    }
    return {files.begin(), files.end()};
}

TripletLayout ztfLayout() {
    TripletLayout l;
    l.planes = {"science", "reference", "difference"};
    l.height = l.width = 63;
    l.orientation = "ztf_stamp_as_distributed";
    l.pixelUnits = "DN (ZTF stamps as distributed; the template is not scaled to the science image)";
    return l;
}

int ztfStampOffset(int stampSize, int frameSize, std::optional<double> pos1) {
    if (stampSize >= frameSize) return (frameSize - stampSize) / 2;  // 0 or negative: centre crop
    if (pos1 && *pos1 < frameSize / 2 + 1) return frameSize - stampSize;
    return 0;
}

Triplet ztfTriplet(const ZtfAlert& a, const ZtfImportConfig& config) {
    const ZtfCandidate& c = a.candidate;
    TripletMeta m;
    std::optional<double> score;
    switch (config.score) {
        case ZtfScore::Drb: score = c.drb; m.labelSource = LabelSource::ZtfDrb; break;
        case ZtfScore::Rb: score = c.rb; m.labelSource = LabelSource::ZtfRb; break;
        case ZtfScore::Auto:
            score = c.drb ? c.drb : c.rb;
            m.labelSource = c.drb ? LabelSource::ZtfDrb : LabelSource::ZtfRb;
            break;
    }
    if (!score || !std::isfinite(*score))
        throw DataError(a.source + ": field 'candidate." + std::string(m.labelSource == LabelSource::ZtfDrb ? "drb" : "rb") +
                        "' is missing or null (schema " + a.schemaVersion + "), so the packet has no label" +
                        (config.score == ZtfScore::Drb ? "; --score auto falls back to rb" : ""));
    TripletLayout layout = ztfLayout();
    layout.split = config.split;
    TripletBuilder b(layout);
    const Image<float>* planes[3] = {&a.science, &a.reference, &a.difference};
    for (std::size_t p = 0; p < 3; ++p) {
        const Image<float>& s = *planes[p];
        b.paste(p, s, ztfStampOffset(s.width(), layout.width, c.xpos), ztfStampOffset(s.height(), layout.height, c.ypos));
    }
    m.targetId = -1;
    m.targetName = a.objectId;
    m.obsId = a.candid;
    m.mjd = c.jd - 2400000.5;
    m.filter = c.fid == 1 ? "ztf_g" : c.fid == 2 ? "ztf_r" : c.fid == 3 ? "ztf_i" : "ztf_fid" + std::to_string(c.fid);
    m.ra = c.ra;
    m.dec = c.dec;
    if (c.xpos) m.x = *c.xpos - 1.0;
    if (c.ypos) m.y = *c.ypos - 1.0;
    m.score = *score;
    CandidateFeatures& f = m.features;
    f.mag = c.magpsf;
    f.magErr = c.sigmapsf;
    if (c.sigmapsf > 0) f.snr = 2.5 / std::log(10.0) / c.sigmapsf;
    if (c.magzpsci) {
        f.flux = std::pow(10.0, -0.4 * (c.magpsf - *c.magzpsci));
        if (std::isfinite(f.snr)) f.fluxErr = f.flux / f.snr;
    }
    if (c.scorr) f.significance = *c.scorr;
    if (c.fwhm) f.fwhm = *c.fwhm;
    if (c.elong && *c.elong > 0) f.ellipticity = 1.0 - 1.0 / *c.elong;
    if (c.nbad) f.nBad = static_cast<std::int32_t>(*c.nbad);
    if (c.distnr) f.nearestRefDistPx = *c.distnr;
    if (c.magnr) f.nearestRefMag = *c.magnr;
    if (c.isdiffpos == "t" || c.isdiffpos == "1") f.isDiffPos = 1;
    else if (c.isdiffpos == "f" || c.isdiffpos == "0") f.isDiffPos = 0;
    m.split = assignSplit(a.objectId, config.split);
    const Label label = *score >= config.threshold ? Label::Real : Label::Bogus;
    return b.finish(label, std::move(m));
}

}  // namespace astrid::training
