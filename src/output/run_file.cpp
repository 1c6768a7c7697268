#include "astrid/output/run_file.hpp"

#include <vector>

#include "astrid/core/error.hpp"

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
    std::optional<training::TripletLayout> trainingLayout;
    Table triplets, tripletMask, tripletLabels, tripletMeta;

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
        appendRows(t, {}, rows, count, offset, total, name);
    }

    // Appends `count` rows of shape `rowDims` (empty for a 1-D table) at [current + offset, + count)
    // after growing dimension 0 by `total`.
    void appendRows(Table& t, const std::vector<hsize_t>& rowDims, const void* rows, std::uint64_t count,
                    std::uint64_t offset, std::uint64_t total, const char* name) {
        if (total == 0) return;  // every rank sees the same total: nobody calls set_extent
        const int rank = 1 + static_cast<int>(rowDims.size());
        std::vector<hsize_t> dims(rank, 0);
        {
            h5::Handle space(h5::check(H5Dget_space(t.dataset.get()), "H5Dget_space"));
            H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
        }
        const hsize_t current = dims[0];
        dims[0] = current + total;
        h5::check(H5Dset_extent(t.dataset.get(), dims.data()), (path + ": cannot extend /" + name).c_str());
        h5::Handle fileSpace(h5::check(H5Dget_space(t.dataset.get()), "H5Dget_space"));
        std::vector<hsize_t> memDims(rank), start(rank, 0);
        memDims[0] = count > 0 ? count : 1;
        for (std::size_t i = 0; i < rowDims.size(); ++i) memDims[i + 1] = rowDims[i];
        h5::Handle memSpace(h5::check(H5Screate_simple(rank, memDims.data(), nullptr), "H5Screate_simple"));
        if (count > 0) {
            start[0] = current + offset;
            h5::check(H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, start.data(), nullptr, memDims.data(), nullptr),
                      "H5Sselect_hyperslab");
        } else {
            // A rank with nothing to write still joins the collective write with empty selections.
            H5Sselect_none(fileSpace.get());
            H5Sselect_none(memSpace.get());
        }
        static const char dummy[8] = {0};
        h5::check(H5Dwrite(t.dataset.get(), t.type.get(), memSpace.get(), fileSpace.get(), dxpl.get(),
                           count > 0 ? rows : dummy),
                  (path + ": cannot write /" + name).c_str());
        if (hooks.afterWrite) hooks.afterWrite(dxpl.get());
    }

    // An extendible dataset [0, rowDims...] chunked one row per chunk (rowsPerChunk for 1-D).
    Table createArray(hid_t parent, const char* name, hid_t type, const std::vector<hsize_t>& rowDims,
                      hsize_t rowsPerChunk, int gzipLevel, const char* description) {
        const int rank = 1 + static_cast<int>(rowDims.size());
        std::vector<hsize_t> dims(rank, 0), maxdims(rank), chunk(rank);
        maxdims[0] = H5S_UNLIMITED;
        chunk[0] = rowsPerChunk;
        for (std::size_t i = 0; i < rowDims.size(); ++i) dims[i + 1] = maxdims[i + 1] = chunk[i + 1] = rowDims[i];
        h5::Handle space(h5::check(H5Screate_simple(rank, dims.data(), maxdims.data()), "H5Screate_simple"));
        h5::Handle dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"));
        h5::check(H5Pset_chunk(dcpl.get(), rank, chunk.data()), "H5Pset_chunk");
        if (gzipLevel > 0) {
            h5::check(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle");
            h5::check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(gzipLevel)), "H5Pset_deflate");
        }
        Table t;
        t.dataset = h5::Handle(h5::check(H5Dcreate2(parent, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                                         path + ": cannot create dataset /" + kTrainingGroup + "/" + name));
        t.type = h5::Handle(h5::check(H5Tcopy(type), "H5Tcopy"));
        writeStringAttr(t.dataset.get(), "description", description);
        return t;
    }

    void createTraining(const training::TripletLayout& layout) {
        layout.validate();
        h5::Handle group(h5::check(H5Gcreate2(file.get(), kTrainingGroup, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                   path + ": cannot create group /" + kTrainingGroup));
        const hsize_t P = layout.planeCount(), H = static_cast<hsize_t>(layout.height), W = static_cast<hsize_t>(layout.width);
        writeStringAttr(group.get(), "description",
                        "labelled cutout triplets for real/bogus training: triplets, mask, labels and meta share index N");
        writeStringAttr(group.get(), "split_hash",
                        "splitmix64_finalizer(fnv1a_64(utf8(target_name))) >> 11, times 2^-53 -> u in [0,1); "
                        "train if u < split_train, validation if u < split_train + split_validation, else test");
        writeScalarAttr(group.get(), "split_train", H5T_NATIVE_DOUBLE, layout.split.train);
        writeScalarAttr(group.get(), "split_validation", H5T_NATIVE_DOUBLE, layout.split.validation);

        triplets = createArray(group.get(), "triplets", H5T_NATIVE_FLOAT, {P, H, W}, 1, layout.gzipLevel,
                               "float32 [N, planes, height, width] cutouts centred on the candidate; row-major, x fastest");
        writeStringAttr(triplets.dataset.get(), "planes", layout.planesAttribute());
        writeStringAttr(triplets.dataset.get(), "orientation", layout.orientation);
        writeStringAttr(triplets.dataset.get(), "pixel_units", layout.pixelUnits);
        writeScalarAttr(triplets.dataset.get(), "height", H5T_NATIVE_INT, layout.height);
        writeScalarAttr(triplets.dataset.get(), "width", H5T_NATIVE_INT, layout.width);
        tripletMask = createArray(group.get(), "mask", H5T_NATIVE_UINT8, {H, W}, 1, layout.gzipLevel,
                                  "uint8 [N, height, width] bits: 1 outside the image (padding, 0 in every plane), "
                                  "2 non-finite/bad/no-data/cosmic ray in some plane (non-finite values stored as 0), "
                                  "4 saturated in some plane");
        tripletLabels = createArray(group.get(), "labels", H5T_NATIVE_INT8, {}, 4096, 0,
                                    "int8 [N]: 1 real, 0 bogus, 2 blank-sky negative");
        h5::Handle metaType = h5types::trainingMetaRow();
        tripletMeta = createArray(group.get(), "meta", metaType.get(), {}, kChunkRows, 0,
                                  "one row per triplet: target, epoch, position, label source, score, injected truth, "
                                  "candidate features, split");
        trainingLayout = layout;
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
    if (meta.training) impl->createTraining(*meta.training);
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

void RunFile::appendTraining(const TrainingBatch& batch, std::uint64_t offset, std::uint64_t total) {
    if (!impl_->trainingLayout)
        throw H5Error(impl_->path + ": cannot append triplets: the file was created without a training layout");
    const training::TripletLayout& l = *impl_->trainingLayout;
    const std::size_t n = batch.size();
    if (batch.meta.size() != n || (n > 0 && (batch.tripletPixels != l.tripletPixels() || batch.planePixels != l.planePixels())) ||
        batch.triplets.size() != n * l.tripletPixels() || batch.mask.size() != n * l.planePixels())
        throw DataError(impl_->path + ": a training batch of " + std::to_string(n) + " triplets does not fit the layout " +
                        l.planesAttribute() + " " + std::to_string(l.width) + "x" + std::to_string(l.height) + " (" +
                        std::to_string(batch.triplets.size()) + " pixels, " + std::to_string(batch.mask.size()) +
                        " mask pixels, " + std::to_string(batch.meta.size()) + " meta rows)");
    const hsize_t P = l.planeCount(), H = static_cast<hsize_t>(l.height), W = static_cast<hsize_t>(l.width);
    impl_->appendRows(impl_->triplets, {P, H, W}, batch.triplets.data(), n, offset, total, kTrainingTriplets);
    impl_->appendRows(impl_->tripletMask, {H, W}, batch.mask.data(), n, offset, total, kTrainingMask);
    impl_->appendRows(impl_->tripletLabels, {}, batch.labels.data(), n, offset, total, kTrainingLabels);
    impl_->appendRows(impl_->tripletMeta, {}, batch.meta.data(), n, offset, total, kTrainingMeta);
}

const std::optional<training::TripletLayout>& RunFile::trainingLayout() const noexcept { return impl_->trainingLayout; }

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
    impl_->triplets = {};
    impl_->tripletMask = {};
    impl_->tripletLabels = {};
    impl_->tripletMeta = {};
    impl_->dxpl.reset();
    impl_->file.close(impl_->path + ": closing the output file");
}

}  // namespace astrid::output
