#include "astrid/output/reader.hpp"

#include <algorithm>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>

#include "h5.hpp"
#include "types.hpp"

namespace astrid::output {

struct RunReader::Impl {
    std::string path;
    h5::Handle file;

    h5::Handle openTable(const std::string& name) const {
        if (H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) <= 0)
            throw H5Error(path + ": no table /" + name);
        return h5::Handle(h5::check(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), path + ": cannot open /" + name));
    }

    template <class Row>
    std::vector<Row> read(const std::string& name, h5::Handle memType) const {
        h5::Handle ds = openTable(name);
        h5::Handle space(h5::check(H5Dget_space(ds.get()), "H5Dget_space"));
        hsize_t n = 0;
        H5Sget_simple_extent_dims(space.get(), &n, nullptr);
        std::vector<Row> rows(n);
        if (n > 0)
            h5::check(H5Dread(ds.get(), memType.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()),
                      (path + ": cannot read /" + name).c_str());
        return rows;
    }
};

RunReader::RunReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
    h5::silenceAutomaticErrorPrinting();
    impl_->path = path;
    impl_->file = h5::Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!impl_->file) h5::fail("cannot open '" + path + "' as an HDF5 file");
}
RunReader::RunReader(RunReader&&) noexcept = default;
RunReader::~RunReader() = default;

std::optional<std::string> RunReader::stringAttribute(const std::string& name) const {
    if (H5Aexists(impl_->file.get(), name.c_str()) <= 0) return std::nullopt;
    h5::Handle attr(h5::check(H5Aopen(impl_->file.get(), name.c_str(), H5P_DEFAULT), "H5Aopen"));
    h5::Handle type(h5::check(H5Aget_type(attr.get()), "H5Aget_type"));
    if (H5Tget_class(type.get()) != H5T_STRING) return std::nullopt;
    if (H5Tis_variable_str(type.get()) > 0) {
        char* s = nullptr;
        h5::check(H5Aread(attr.get(), type.get(), &s), "H5Aread");
        std::string out = s ? s : "";
        H5free_memory(s);
        return out;
    }
    std::string buf(H5Tget_size(type.get()), '\0');
    h5::check(H5Aread(attr.get(), type.get(), buf.data()), "H5Aread");
    buf.resize(std::strlen(buf.c_str()));
    return buf;
}

std::optional<double> RunReader::numberAttribute(const std::string& name) const {
    if (H5Aexists(impl_->file.get(), name.c_str()) <= 0) return std::nullopt;
    h5::Handle attr(h5::check(H5Aopen(impl_->file.get(), name.c_str(), H5P_DEFAULT), "H5Aopen"));
    h5::Handle type(h5::check(H5Aget_type(attr.get()), "H5Aget_type"));
    const auto cls = H5Tget_class(type.get());
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) return std::nullopt;
    double v = 0;
    h5::check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v), "H5Aread");
    return v;
}

std::vector<std::string> RunReader::tables() const {
    std::vector<std::string> names;
    // HDF5 1.10 API (Debian 12): H5Literate / H5Oget_info_by_name2.
    H5Literate(
        impl_->file.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
        [](hid_t g, const char* name, const H5L_info_t*, void* data) -> herr_t {
            H5O_info_t info;
            if (H5Oget_info_by_name2(g, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_DATASET)
                static_cast<std::vector<std::string>*>(data)->push_back(name);
            return 0;
        },
        &names);
    std::sort(names.begin(), names.end());
    return names;
}

std::uint64_t RunReader::rowCount(const std::string& table) const {
    h5::Handle ds = impl_->openTable(table);
    h5::Handle space(h5::check(H5Dget_space(ds.get()), "H5Dget_space"));
    hsize_t dims[4] = {0, 0, 0, 0};
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    return dims[0];
}

std::vector<TargetRow> RunReader::targets() const { return impl_->read<TargetRow>(kTargetsTable, h5types::targetRow()); }
std::vector<ObservationRow> RunReader::observations() const {
    return impl_->read<ObservationRow>(kObservationsTable, h5types::observationRow());
}
std::vector<CatalogIssueRow> RunReader::catalogIssues() const {
    return impl_->read<CatalogIssueRow>(kCatalogIssuesTable, h5types::catalogIssueRow());
}

std::vector<DifferenceRunRow> RunReader::differenceRuns() const {
    return impl_->read<DifferenceRunRow>(kDifferenceRunsTable, h5types::differenceRunRow());
}

std::vector<CandidateRow> RunReader::candidates() const {
    return impl_->read<CandidateRow>(kCandidatesTable, h5types::candidateRow());
}

std::vector<InjectionRow> RunReader::injections() const {
    return impl_->read<InjectionRow>(kInjectionsTable, h5types::injectionRow());
}

std::vector<ForcedPhotometryRow> RunReader::forcedPhotometry() const {
    return impl_->read<ForcedPhotometryRow>(kForcedPhotometryTable, h5types::forcedPhotometryRow());
}

namespace {
std::string csvQuote(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}
}  // namespace

void RunReader::writeCsv(const std::string& table, std::ostream& out) const {
    h5::Handle ds = impl_->openTable(table);
    h5::Handle fileType(h5::check(H5Dget_type(ds.get()), "H5Dget_type"));
    if (H5Tget_class(fileType.get()) != H5T_COMPOUND) throw H5Error(impl_->path + ": /" + table + " is not a table");
    h5::Handle memType(h5::check(H5Tget_native_type(fileType.get(), H5T_DIR_ASCEND), "H5Tget_native_type"));
    const int nMembers = H5Tget_nmembers(memType.get());
    const std::size_t rowSize = H5Tget_size(memType.get());
    const std::uint64_t n = rowCount(table);
    std::vector<unsigned char> buf(static_cast<std::size_t>(n) * rowSize);
    if (n > 0) h5::check(H5Dread(ds.get(), memType.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), "H5Dread");
    struct Member {
        std::string name;
        std::size_t offset;
        h5::Handle type;
        H5T_class_t cls;
    };
    std::vector<Member> members;
    for (int i = 0; i < nMembers; ++i) {
        char* name = H5Tget_member_name(memType.get(), static_cast<unsigned>(i));
        Member m{name, H5Tget_member_offset(memType.get(), static_cast<unsigned>(i)),
                 h5::Handle(H5Tget_member_type(memType.get(), static_cast<unsigned>(i))), H5T_NO_CLASS};
        H5free_memory(name);
        m.cls = H5Tget_class(m.type.get());
        members.push_back(std::move(m));
    }
    // Fixed-size arrays of doubles (e.g. aperture fluxes at three radii) become name_0, name_1, ...
    auto arrayLength = [](const Member& m) -> std::size_t {
        if (m.cls != H5T_ARRAY) return 0;
        h5::Handle base(H5Tget_super(m.type.get()));
        if (H5Tget_class(base.get()) != H5T_FLOAT || H5Tget_size(base.get()) != 8) return 0;
        return H5Tget_size(m.type.get()) / 8;
    };
    bool first = true;
    for (const Member& m : members) {
        const std::size_t len = arrayLength(m);
        if (len == 0) {
            out << (first ? "" : ",") << m.name;
            first = false;
        }
        for (std::size_t k = 0; k < len; ++k, first = false) out << (first ? "" : ",") << m.name << "_" << k;
    }
    out << "\n";
    out << std::setprecision(std::numeric_limits<double>::max_digits10);
    for (std::uint64_t r = 0; r < n; ++r) {
        const unsigned char* row = buf.data() + r * rowSize;
        for (std::size_t i = 0; i < members.size(); ++i) {
            if (i) out << ",";
            const Member& m = members[i];
            const unsigned char* p = row + m.offset;
            const std::size_t size = H5Tget_size(m.type.get());
            switch (m.cls) {
                case H5T_STRING: {
                    std::string s(reinterpret_cast<const char*>(p), size);
                    s.resize(std::strlen(s.c_str()));
                    out << csvQuote(s);
                    break;
                }
                case H5T_ENUM: {
                    char name[64] = {0};
                    if (H5Tenum_nameof(m.type.get(), p, name, sizeof name) >= 0)
                        out << name;
                    else
                        out << "?";
                    break;
                }
                case H5T_FLOAT: {
                    double v = 0;
                    if (size == 8) std::memcpy(&v, p, 8);
                    else {
                        float f = 0;
                        std::memcpy(&f, p, 4);
                        v = f;
                    }
                    out << v;
                    break;
                }
                case H5T_INTEGER: {
                    const bool isSigned = H5Tget_sign(m.type.get()) == H5T_SGN_2;
                    long long v = 0;
                    unsigned long long u = 0;
                    std::memcpy(&u, p, std::min<std::size_t>(size, 8));
                    if (isSigned) {
                        const int shift = static_cast<int>(64 - 8 * size);
                        v = shift ? (static_cast<long long>(u << shift) >> shift) : static_cast<long long>(u);
                        out << v;
                    } else
                        out << u;
                    break;
                }
                case H5T_ARRAY: {
                    const std::size_t len = arrayLength(m);
                    for (std::size_t k = 0; k < len; ++k) {
                        double v = 0;
                        std::memcpy(&v, p + 8 * k, 8);
                        out << (k ? "," : "") << v;
                    }
                    break;
                }
                default: out << "";
            }
        }
        out << "\n";
    }
}

}  // namespace astrid::output
