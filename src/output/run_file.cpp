#include "astrid/output/run_file.hpp"

#include <vector>

#include "astrid/core/version.hpp"
#include "h5.hpp"
#include "types.hpp"

namespace astrid::output {
namespace {
constexpr hsize_t kChunkRows = 512;

// Variable-length UTF-8: h5py returns str (not bytes) for these. Attributes are metadata, which
// parallel HDF5 writes from identical values on every rank, so VL is fine here (unlike tables).
void writeStringAttr(hid_t obj, const char* name, const std::string& value) {
    h5::Handle type(h5::check(H5Tcopy(H5T_C_S1), "H5Tcopy"));
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    h5::Handle space(h5::check(H5Screate(H5S_SCALAR), "H5Screate"));
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    h5::Handle attr(h5::check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                              std::string("creating attribute ") + name));
    const char* text = value.c_str();
    h5::check(H5Awrite(attr.get(), type.get(), &text), "H5Awrite");
}

template <class T>
void writeScalarAttr(hid_t obj, const char* name, hid_t type, T value) {
    h5::Handle space(h5::check(H5Screate(H5S_SCALAR), "H5Screate"));
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    h5::Handle attr(h5::check(H5Acreate2(obj, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                              std::string("creating attribute ") + name));
    h5::check(H5Awrite(attr.get(), type, &value), "H5Awrite");
}
}  // namespace

struct RunFile::Impl {
    std::string path;
    ParallelHooks hooks;
    h5::Handle file;
    h5::Handle dxpl;
    struct Table {
        h5::Handle dataset;
        h5::Handle type;
    };
    Table targets, observations, catalogIssues, differenceRuns, candidates, forcedPhotometry, injections;

    Table createTable(const char* name, h5::Handle type, const char* description) {
        const hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {kChunkRows};
        h5::Handle space(h5::check(H5Screate_simple(1, dims, maxdims), "H5Screate_simple"));
        h5::Handle dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"));
        h5::check(H5Pset_chunk(dcpl.get(), 1, chunk), "H5Pset_chunk");
        Table t;
        t.dataset = h5::Handle(h5::check(
            H5Dcreate2(file.get(), name, type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            path + ": cannot create dataset /" + name));
        t.type = std::move(type);
        writeStringAttr(t.dataset.get(), "description", description);
        return t;
    }

    void append(Table& t, const void* rows, std::uint64_t count, std::uint64_t offset, std::uint64_t total,
                const char* name) {
        if (total == 0) return;  // every rank sees the same total: nobody calls set_extent
        hsize_t current = 0;
        {
            h5::Handle space(h5::check(H5Dget_space(t.dataset.get()), "H5Dget_space"));
            H5Sget_simple_extent_dims(space.get(), &current, nullptr);
        }
        const hsize_t newSize[1] = {current + total};
        h5::check(H5Dset_extent(t.dataset.get(), newSize), (path + ": cannot extend /" + name).c_str());
        h5::Handle fileSpace(h5::check(H5Dget_space(t.dataset.get()), "H5Dget_space"));
        const hsize_t memDims[1] = {count > 0 ? count : 1};
        h5::Handle memSpace(h5::check(H5Screate_simple(1, memDims, nullptr), "H5Screate_simple"));
        if (count > 0) {
            const hsize_t start[1] = {current + offset}, cnt[1] = {count};
            h5::check(H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr),
                      "H5Sselect_hyperslab");
        } else {
            // A rank with nothing to write still joins the collective write with empty selections.
            H5Sselect_none(fileSpace.get());
            H5Sselect_none(memSpace.get());
        }
        static const char dummy[1] = {0};
        h5::check(H5Dwrite(t.dataset.get(), t.type.get(), memSpace.get(), fileSpace.get(), dxpl.get(),
                           count > 0 ? rows : dummy),
                  (path + ": cannot write /" + name).c_str());
        if (hooks.afterWrite) hooks.afterWrite(dxpl.get());
    }
};

RunFile::RunFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RunFile::RunFile(RunFile&&) noexcept = default;
RunFile& RunFile::operator=(RunFile&&) noexcept = default;
RunFile::~RunFile() = default;  // Handles close without throwing

const std::string& RunFile::path() const noexcept { return impl_->path; }

RunFile RunFile::create(const std::string& path, const RunMetadata& meta, const ParallelHooks& hooks) {
    h5::silenceAutomaticErrorPrinting();
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->hooks = hooks;
    h5::Handle fapl(h5::check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate"));
    if (hooks.configureFileAccess) hooks.configureFileAccess(fapl.get());
    impl->file = h5::Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!impl->file) h5::fail("cannot create the output file '" + path + "' (does its directory exist and is it writable?)");
    impl->dxpl = h5::Handle(h5::check(H5Pcreate(H5P_DATASET_XFER), "H5Pcreate"));
    if (hooks.configureTransfer) hooks.configureTransfer(impl->dxpl.get());

    const hid_t root = impl->file.get();
    writeScalarAttr(root, "schema_version", H5T_NATIVE_INT, kSchemaVersion);
    writeStringAttr(root, "astrid_version", std::string(version()));
    writeStringAttr(root, "git_sha", std::string(gitSha()));
    writeStringAttr(root, "config", meta.configText);
    writeStringAttr(root, "command_line", meta.commandLine);
    writeStringAttr(root, "start_utc", meta.startUtc);
    writeStringAttr(root, "end_utc", "");
    writeStringAttr(root, "status", "running");
    writeScalarAttr(root, "n_ranks", H5T_NATIVE_INT, meta.nRanks);

    impl->targets = impl->createTable(kTargetsTable, h5types::targetRow(),
                                      "one row per processed target: status, failing stage and reason, timings");
    impl->observations = impl->createTable(kObservationsTable, h5types::observationRow(),
                                           "every observation listed for a processed target, with its role and status");
    impl->catalogIssues = impl->createTable(kCatalogIssuesTable, h5types::catalogIssueRow(),
                                            "catalog rows rejected by the parser or excluded by a filter, with reasons");
    impl->differenceRuns = impl->createTable(kDifferenceRunsTable, h5types::differenceRunRow(),
                                             "one row per science epoch differenced against the reference (ZOGY)");
    impl->candidates = impl->createTable(kCandidatesTable, h5types::candidateRow(),
                                         "one row per candidate detected on a difference's S_corr");
    impl->forcedPhotometry = impl->createTable(kForcedPhotometryTable, h5types::forcedPhotometryRow(),
                                               "forced photometry per (position, science epoch): the light curves");
    impl->injections = impl->createTable(kInjectionsTable, h5types::injectionRow(),
                                         "fakes injected into science epochs: truth and recovery (completeness)");
    return RunFile(std::move(impl));
}

void RunFile::appendTargets(std::span<const TargetRow> rows, std::uint64_t offset, std::uint64_t total) {
    impl_->append(impl_->targets, rows.data(), rows.size(), offset, total, kTargetsTable);
}
void RunFile::appendObservations(std::span<const ObservationRow> rows, std::uint64_t offset, std::uint64_t total) {
    impl_->append(impl_->observations, rows.data(), rows.size(), offset, total, kObservationsTable);
}
void RunFile::appendCatalogIssues(std::span<const CatalogIssueRow> rows, std::uint64_t offset, std::uint64_t total) {
    impl_->append(impl_->catalogIssues, rows.data(), rows.size(), offset, total, kCatalogIssuesTable);
}

void RunFile::appendCandidates(std::span<const CandidateRow> rows, std::uint64_t offset, std::uint64_t total) {
    impl_->append(impl_->candidates, rows.data(), rows.size(), offset, total, kCandidatesTable);
}

void RunFile::appendForcedPhotometry(std::span<const ForcedPhotometryRow> rows, std::uint64_t offset,
                                     std::uint64_t total) {
    impl_->append(impl_->forcedPhotometry, rows.data(), rows.size(), offset, total, kForcedPhotometryTable);
}

void RunFile::appendInjections(std::span<const InjectionRow> rows, std::uint64_t offset, std::uint64_t total) {
    impl_->append(impl_->injections, rows.data(), rows.size(), offset, total, kInjectionsTable);
}

void RunFile::appendDifferenceRuns(std::span<const DifferenceRunRow> rows, std::uint64_t offset, std::uint64_t total) {
    impl_->append(impl_->differenceRuns, rows.data(), rows.size(), offset, total, kDifferenceRunsTable);
}

void RunFile::setRootAttribute(const std::string& name, const std::string& value) {
    writeStringAttr(impl_->file.get(), name.c_str(), value);
}

void RunFile::flush() {
    h5::check(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL), (impl_->path + ": flush failed").c_str());
}

void RunFile::finish(const RunEnd& end) {
    const hid_t root = impl_->file.get();
    writeStringAttr(root, "end_utc", end.endUtc);
    writeStringAttr(root, "status", end.status);
    writeScalarAttr(root, "targets_ok", H5T_NATIVE_INT64, end.targetsOk);
    writeScalarAttr(root, "targets_failed", H5T_NATIVE_INT64, end.targetsFailed);
    writeScalarAttr(root, "targets_skipped", H5T_NATIVE_INT64, end.targetsSkipped);
    writeScalarAttr(root, "wall_s", H5T_NATIVE_DOUBLE, end.wallS);
    impl_->targets = {};
    impl_->observations = {};
    impl_->catalogIssues = {};
    impl_->differenceRuns = {};
    impl_->candidates = {};
    impl_->forcedPhotometry = {};
    impl_->injections = {};
    impl_->dxpl.reset();
    impl_->file.close(impl_->path + ": closing the output file");
}

}  // namespace astrid::output
