#include "config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <iostream>
#include <sstream>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/text.hpp"

namespace astrid::app {
namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {
// Every job key with its documentation; defaults come from the library structs.
struct Keys {
    std::string catalog, catalogFormat, archive, output, types, filterBand, logLevel, computes;
    int minYear = 0;
    long long limit = 0;
    bool requireBoth = true;
};
}  // namespace

po::options_description jobOptions() {
    const pipeline::PipelineConfig p;
    const runner::RunOptions r;
    po::options_description d("Job keys (job file or --key value)");
    d.add_options()
        ("catalog", po::value<std::string>(), "target catalog (SAI sncat layout or CSV)")
        ("catalog_format", po::value<std::string>()->default_value("auto"), "auto | sai | csv")
        ("archive", po::value<std::string>(), "local archive root: one directory of FITS files per target")
        ("manifest", po::value<std::string>(), "query manifest (astrid query) to read instead of a local archive")
        ("cache", po::value<std::string>(), "download cache of the manifest's products (astrid stage)")
        ("fetch_on_demand", po::value<bool>()->default_value(false), "download products missing from the cache during the run (else: offline)")
        ("mast_url", po::value<std::string>()->default_value(""), "MAST mirror: rewrite the manifest's MAST product URLs to this base")
        ("irsa_url", po::value<std::string>()->default_value(""), "IRSA mirror: rewrite the manifest's IRSA product URLs to this base")
        ("http_max_per_host", po::value<int>()->default_value(4), "concurrent downloads per archive host, whole job (ranks share the cache's lock files)")
        ("http_attempts", po::value<int>()->default_value(6), "attempts per download (exponential backoff with jitter between them)")
        ("http_stall_seconds", po::value<double>()->default_value(60.0), "abandon (and retry) a transfer that stalls this long")
        ("output", po::value<std::string>()->default_value("astrid_run.h5"), "the run's HDF5 file")
        ("min_year", po::value<int>(), "keep targets discovered in this year or later")
        ("limit", po::value<long long>(), "keep the first N targets (after the other filters)")
        ("types", po::value<std::string>(), "comma-separated type prefixes to keep, e.g. Ia,II")
        ("slice", po::value<std::string>(), "i/N: keep the i-th (0-based) of N contiguous blocks of the filtered targets (job arrays; astrid merge joins the outputs)")
        ("days_before", po::value<double>()->default_value(p.select.daysBefore), "reference window start, days before discovery")
        ("ref_margin_days", po::value<double>()->default_value(p.select.refMarginDays), "reference window ends this many days before discovery")
        ("days_after", po::value<double>()->default_value(p.select.daysAfter), "science window end, days after discovery")
        ("max_reference", po::value<int>()->default_value(p.select.maxReference), "references per target (best seeing first)")
        ("max_science", po::value<int>()->default_value(p.select.maxScience), "science epochs per target (earliest first)")
        ("require_both", po::value<bool>()->default_value(p.select.requireBoth), "fail a target lacking a reference or a science epoch")
        ("filter", po::value<std::string>()->default_value(""), "only this filter band (empty: the best-covered one)")
        ("min_overlap", po::value<double>()->default_value(p.select.minOverlap), "minimum fraction of a science image covered by the reference")
        ("max_bad_fraction", po::value<double>()->default_value(p.validate.maxBadFraction), "maximum fraction of NaN/Inf pixels in an image")
        ("target_margin_px", po::value<double>()->default_value(p.validate.targetMarginPx), "the target must be this far inside every image")
        ("difference", po::value<bool>()->default_value(p.differenceOutput.enabled), "difference every science epoch (ZOGY)")
        ("write_difference_fits", po::value<bool>()->default_value(p.differenceOutput.writeFits), "write D and S_corr as FITS files")
        ("difference_dir", po::value<std::string>()->default_value(""), "directory of the FITS outputs (default: <output>.diff)")
        ("zogy_tile_px", po::value<int>()->default_value(p.difference.zogy.tilePx), "ZOGY tile size (px); <= 0: whole image")
        ("zogy_remove_offset", po::value<bool>()->default_value(p.difference.zogy.removeOffset), "remove the differential background (median of D per ZOGY tile) from D and S_corr")
        ("interpolate_max_run", po::value<int>()->default_value(p.prepare.interpolateMaxRun), "interpolate over runs of at most this many bad/cosmic-ray pixels along a row before registration and ZOGY (flagged Interpolated); 0: off")
        ("detection_threshold", po::value<double>()->default_value(p.difference.detectionThreshold), "S_corr detection threshold (sigma)")
        ("detect", po::value<bool>()->default_value(p.detectCandidates), "detect candidates on every difference's S_corr (/candidates)")
        ("forced_photometry", po::value<bool>()->default_value(p.photometry.enabled), "forced photometry at the target on every science epoch (/forced_photometry)")
        ("zero_point", po::value<double>()->default_value(std::numeric_limits<double>::quiet_NaN(), "nan"), "reference zero point (mag of 1 ADU); nan: the reference header's MAGZP, MAGZERO, MAGZPT, ZEROPT, PHOTZP or ZP")
        ("source_catalog", po::value<std::string>()->default_value(""), "CSV of ra, dec[, id, mag]: forced photometry at each position on every science epoch (/forced_photometry source_kind 1)")
        ("reference_catalog", po::value<std::string>()->default_value(""), "CSV of ra, dec, mag[, id]: stars that set the reference's zero point (instead of its header)")
        ("training_cutouts", po::value<bool>()->default_value(p.training.enabled), "cut labelled triplets (science, reference, difference[, S_corr]) at every candidate, the target's position and every recovered fake into /training")
        ("cutout_size", po::value<int>()->default_value(p.training.layout.width), "triplet size, px (odd; 63 like ZTF alerts)")
        ("cutout_scorr", po::value<bool>()->default_value(false), "add S_corr as a fourth plane")
        ("cutout_edge", po::value<std::string>()->default_value("pad"), "cutouts crossing the border: pad (mask bit outside) | skip")
        ("fakes_per_epoch", po::value<int>()->default_value(p.injection.perEpoch), "fake point sources injected into every science epoch (/injections, completeness); 0: none")
        ("fake_dmag_min", po::value<double>()->default_value(p.injection.dmagMin), "brightest fake, magnitudes relative to the 5-sigma limit at its position")
        ("fake_dmag_max", po::value<double>()->default_value(p.injection.dmagMax), "faintest fake, magnitudes relative to the 5-sigma limit")
        ("fake_host_fraction", po::value<double>()->default_value(p.injection.hostFraction), "fraction of fakes placed 0.5-2 FWHM from a detected source (the rest on blank sky)")
        ("fake_seed", po::value<long long>()->default_value(static_cast<long long>(p.injection.seed)), "seed of the fake positions and magnitudes (with the target and the epoch)")
        ("upper_limit_sigma", po::value<double>()->default_value(p.photometry.upperLimitSigma), "sigma of the upper limits in the light curves")
        ("fft_effort", po::value<std::string>()->default_value("measure"), "FFTW planning: estimate | measure (slower start, faster transforms)")
        ("fft_wisdom", po::value<std::string>()->default_value(""), "FFTW wisdom file, read at the start and updated at the end (empty: none)")
        ("checkpoint_targets", po::value<int>()->default_value(r.checkpointTargets), "checkpoint after this many completed targets")
        ("checkpoint_seconds", po::value<double>()->default_value(r.checkpointSeconds), "...or after this many seconds")
        ("scheduler_computes", po::value<std::string>()->default_value("auto"), "rank 0 also processes targets: auto | yes | no")
        ("prefetch", po::value<int>()->default_value(r.prefetch), "targets each rank holds (running + queued)")
        ("progress_seconds", po::value<double>()->default_value(r.progressSeconds), "interval of rank 0's progress lines")
        ("max_retries", po::value<int>()->default_value(r.maxRetries), "extra attempts, on another rank, of a target whose failure is transient (archive unreachable, internal error)")
        ("log_level", po::value<std::string>()->default_value("info"), "trace | debug | info | warn | error | off");
    return d;
}

catalog::Slice parseSlice(const std::string& text) {
    const auto bad = [&] { return ConfigError("must be i/N with 0 <= i < N (e.g. 3/16), not '" + text + "'", "slice"); };
    const auto slash = text.find('/');
    if (slash == std::string::npos) throw bad();
    const auto number = [&](std::string_view part) {
        part = text::trim(part);
        std::size_t v = 0;
        const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
        if (part.empty() || ec != std::errc() || end != part.data() + part.size()) throw bad();
        return v;
    };
    const catalog::Slice slice{number(std::string_view(text).substr(0, slash)),
                               number(std::string_view(text).substr(slash + 1))};
    if (slice.count == 0 || slice.index >= slice.count) throw bad();
    return slice;
}

catalog::CatalogFormat parseCatalogFormat(const std::string& text) {
    if (text == "auto") return catalog::CatalogFormat::Auto;
    if (text == "sai") return catalog::CatalogFormat::Sai;
    if (text == "csv") return catalog::CatalogFormat::Csv;
    throw ConfigError("must be auto, sai or csv, not '" + text + "'", "catalog_format");
}

namespace {
template <class T>
T get(const po::variables_map& vm, const char* key) {
    return vm[key].as<T>();
}

void requirePositive(double v, const char* key) {
    if (!(v > 0.0)) throw ConfigError("must be > 0 (got " + std::to_string(v) + ")", key);
}
}  // namespace

JobConfig parseJobConfig(int argc, const char* const* argv, bool* dump, bool* help) {
    po::options_description cli("astrid run options");
    cli.add_options()("config,c", po::value<std::string>(), "job file (INI: key = value)")(
        "dump-config", "print the resolved configuration and exit")(
        "resume", "resume the interrupted run in the output (an error when there is none); without --resume or "
                  "--fresh an interrupted run with the same configuration is resumed and a new output started")(
        "fresh", "discard an existing output and its journal and start again")("help,h", "this help");
    po::options_description all;
    all.add(cli).add(jobOptions());

    po::variables_map fromCli, fromFile;
    try {
        po::positional_options_description pos;  // `astrid run JOB.ini` == `astrid run --config JOB.ini`
        pos.add("config", 1);
        po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), fromCli);
    } catch (const po::unknown_option& e) {
        throw ConfigError("unknown option on the command line", e.get_option_name());
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (help) *help = fromCli.count("help") > 0;
    if (fromCli.count("resume") && fromCli.count("fresh"))
        throw ConfigError("--resume and --fresh contradict each other", "resume");
    if (dump) *dump = fromCli.count("dump-config") > 0;
    if (fromCli.count("help")) {
        std::cout << "usage: astrid run [--config] JOB.ini [--key value ...] [--dump-config]\n\n" << all << "\n";
        return {};
    }

    JobConfig c;
    fs::path baseDir = fs::current_path();
    if (fromCli.count("config")) {
        c.jobFile = fromCli["config"].as<std::string>();
        std::ifstream in(c.jobFile);
        if (!in) throw ConfigError("cannot open job file '" + c.jobFile + "'", "config");
        baseDir = fs::absolute(c.jobFile).parent_path();
        try {
            po::store(po::parse_config_file(in, jobOptions(), false), fromFile);
        } catch (const po::unknown_option& e) {
            throw ConfigError("unknown key in job file " + c.jobFile, e.get_option_name());
        } catch (const po::invalid_option_value& e) {
            throw ConfigError(std::string(e.what()) + " in job file " + c.jobFile, e.get_option_name());
        } catch (const po::error& e) {
            throw ConfigError(std::string(e.what()) + " in job file " + c.jobFile);
        }
    }
    // Command-line values win; job-file paths are relative to the job file's directory.
    po::variables_map vm;
    for (const auto& [k, v] : fromCli) vm.emplace(k, v);
    for (const auto& [k, v] : fromFile)
        if (!vm.count(k) || vm[k].defaulted()) vm.erase(k), vm.emplace(k, v);
    auto path = [&](const char* key) -> std::string {
        if (!vm.count(key)) return {};
        const std::string value = vm[key].as<std::string>();
        const bool cliGiven = fromCli.count(key) && !fromCli[key].defaulted();
        if (value.empty() || fs::path(value).is_absolute()) return value;
        return ((cliGiven ? fs::current_path() : baseDir) / value).lexically_normal().string();
    };
    c.catalog = path("catalog");
    c.archive = path("archive");
    c.manifest = path("manifest");
    c.cache = path("cache");
    c.fetchOnDemand = get<bool>(vm, "fetch_on_demand");
    c.mastUrl = get<std::string>(vm, "mast_url");
    c.irsaUrl = get<std::string>(vm, "irsa_url");
    c.httpMaxPerHost = get<int>(vm, "http_max_per_host");
    c.httpAttempts = get<int>(vm, "http_attempts");
    c.httpStallSeconds = get<double>(vm, "http_stall_seconds");
    if (c.httpMaxPerHost < 1) throw ConfigError("must be >= 1", "http_max_per_host");
    if (c.httpAttempts < 1) throw ConfigError("must be >= 1", "http_attempts");
    requirePositive(c.httpStallSeconds, "http_stall_seconds");
    c.output = path("output");
    c.catalogFormat = get<std::string>(vm, "catalog_format");
    (void)parseCatalogFormat(c.catalogFormat);
    if (vm.count("min_year")) c.filter.minYear = get<int>(vm, "min_year");
    if (vm.count("limit")) {
        const long long lim = get<long long>(vm, "limit");
        if (lim < 0) throw ConfigError("must be >= 0", "limit");
        c.filter.limit = static_cast<std::size_t>(lim);
    }
    if (vm.count("slice")) c.slice = parseSlice(get<std::string>(vm, "slice"));
    if (vm.count("types")) {
        const std::string types = get<std::string>(vm, "types");  // split() returns views into it
        for (auto t : text::split(types, ','))
            if (!text::trim(t).empty()) c.filter.types.emplace_back(text::trim(t));
    }
    auto& s = c.pipeline.select;
    s.daysBefore = get<double>(vm, "days_before");
    s.refMarginDays = get<double>(vm, "ref_margin_days");
    s.daysAfter = get<double>(vm, "days_after");
    s.maxReference = get<int>(vm, "max_reference");
    s.maxScience = get<int>(vm, "max_science");
    s.requireBoth = get<bool>(vm, "require_both");
    s.filter = get<std::string>(vm, "filter");
    s.minOverlap = get<double>(vm, "min_overlap");
    c.pipeline.validate.maxBadFraction = get<double>(vm, "max_bad_fraction");
    c.pipeline.validate.targetMarginPx = get<double>(vm, "target_margin_px");
    c.pipeline.differenceOutput.enabled = get<bool>(vm, "difference");
    c.pipeline.differenceOutput.writeFits = get<bool>(vm, "write_difference_fits");
    c.pipeline.difference.zogy.tilePx = get<int>(vm, "zogy_tile_px");
    c.pipeline.difference.zogy.removeOffset = get<bool>(vm, "zogy_remove_offset");
    c.pipeline.prepare.interpolateMaxRun = get<int>(vm, "interpolate_max_run");
    if (c.pipeline.prepare.interpolateMaxRun < 0 || c.pipeline.prepare.interpolateMaxRun > 64)
        throw ConfigError("must be in [0, 64]", "interpolate_max_run");
    c.pipeline.difference.detectionThreshold = get<double>(vm, "detection_threshold");
    requirePositive(c.pipeline.difference.detectionThreshold, "detection_threshold");
    c.fftEffort = get<std::string>(vm, "fft_effort");
    if (c.fftEffort != "estimate" && c.fftEffort != "measure")
        throw ConfigError("must be estimate or measure, not '" + c.fftEffort + "'", "fft_effort");
    requirePositive(s.daysBefore, "days_before");
    requirePositive(s.daysAfter, "days_after");
    if (s.maxReference < 1) throw ConfigError("must be >= 1", "max_reference");
    if (s.maxScience < 1) throw ConfigError("must be >= 1", "max_science");
    if (s.minOverlap < 0 || s.minOverlap > 1) throw ConfigError("must be in [0, 1]", "min_overlap");
    c.run.checkpointTargets = get<int>(vm, "checkpoint_targets");
    c.run.checkpointSeconds = get<double>(vm, "checkpoint_seconds");
    c.run.prefetch = get<int>(vm, "prefetch");
    c.run.progressSeconds = get<double>(vm, "progress_seconds");
    if (c.run.checkpointTargets < 1) throw ConfigError("must be >= 1", "checkpoint_targets");
    requirePositive(c.run.checkpointSeconds, "checkpoint_seconds");
    if (c.run.prefetch < 1) throw ConfigError("must be >= 1", "prefetch");
    c.run.maxRetries = get<int>(vm, "max_retries");
    if (c.run.maxRetries < 0) throw ConfigError("must be >= 0", "max_retries");
    c.run.resume = fromCli.count("fresh")    ? runner::ResumeMode::Fresh
                   : fromCli.count("resume") ? runner::ResumeMode::Require
                                             : runner::ResumeMode::Auto;
    const std::string computes = get<std::string>(vm, "scheduler_computes");
    if (computes == "auto") c.run.schedulerComputes = runner::SchedulerComputes::Auto;
    else if (computes == "yes") c.run.schedulerComputes = runner::SchedulerComputes::Yes;
    else if (computes == "no") c.run.schedulerComputes = runner::SchedulerComputes::No;
    else throw ConfigError("must be auto, yes or no, not '" + computes + "'", "scheduler_computes");
    c.logLevel = get<std::string>(vm, "log_level");
    (void)log::parseLevel(c.logLevel, "log_level");
    if (c.catalog.empty()) throw ConfigError("no target catalog given (job key or --catalog)", "catalog");
    if (c.archive.empty() && c.manifest.empty())
        throw ConfigError("no archive given (job key or --archive; or --manifest with --cache)", "archive");
    if (!c.archive.empty() && !c.manifest.empty()) {
        // The command line wins over the job file (`astrid run sim/campaign.ini --manifest m.json`).
        const bool archiveCli = fromCli.count("archive") > 0, manifestCli = fromCli.count("manifest") > 0;
        if (archiveCli == manifestCli)
            throw ConfigError("give either a local archive or a manifest, not both", "manifest");
        (manifestCli ? c.archive : c.manifest).clear();
    }
    if (!c.manifest.empty() && c.cache.empty())
        throw ConfigError("a manifest needs a download cache (job key or --cache)", "cache");
    if (c.output.empty()) throw ConfigError("no output file given", "output");
    c.run.fftWisdomPath = path("fft_wisdom");
    c.pipeline.detectCandidates = get<bool>(vm, "detect");
    c.pipeline.photometry.enabled = get<bool>(vm, "forced_photometry");
    c.pipeline.photometry.zeroPoint = get<double>(vm, "zero_point");
    c.pipeline.photometry.upperLimitSigma = get<double>(vm, "upper_limit_sigma");
    requirePositive(c.pipeline.photometry.upperLimitSigma, "upper_limit_sigma");
    c.sourceCatalog = path("source_catalog");
    c.referenceCatalog = path("reference_catalog");
    if (!c.sourceCatalog.empty()) c.pipeline.photometry.sources = catalog::readSourceCatalog(c.sourceCatalog);
    if (!c.referenceCatalog.empty())
        c.pipeline.photometry.referenceStars = catalog::readSourceCatalog(c.referenceCatalog, true);
    auto& tr = c.pipeline.training;
    tr.enabled = get<bool>(vm, "training_cutouts");
    const int size = get<int>(vm, "cutout_size");
    if (size < 7 || size > 1023 || size % 2 == 0) throw ConfigError("must be odd, 7..1023", "cutout_size");
    tr.layout.width = tr.layout.height = size;
    if (get<bool>(vm, "cutout_scorr")) tr.layout.planes.push_back("scorr");
    const std::string edge = get<std::string>(vm, "cutout_edge");
    if (edge != "pad" && edge != "skip") throw ConfigError("must be pad or skip, not '" + edge + "'", "cutout_edge");
    tr.skipEdge = edge == "skip";
    if (tr.enabled && !c.pipeline.differenceOutput.enabled)
        throw ConfigError("cutouts need differences (difference = true)", "training_cutouts");
    if (tr.enabled) c.run.trainingLayout = tr.layout;
    auto& inj = c.pipeline.injection;
    inj.perEpoch = get<int>(vm, "fakes_per_epoch");
    inj.dmagMin = get<double>(vm, "fake_dmag_min");
    inj.dmagMax = get<double>(vm, "fake_dmag_max");
    inj.hostFraction = get<double>(vm, "fake_host_fraction");
    inj.seed = static_cast<std::uint64_t>(get<long long>(vm, "fake_seed"));
    if (inj.perEpoch < 0) throw ConfigError("must be >= 0", "fakes_per_epoch");
    if (!(inj.dmagMin < inj.dmagMax)) throw ConfigError("must be below fake_dmag_max", "fake_dmag_min");
    if (!(inj.hostFraction >= 0.0 && inj.hostFraction <= 1.0)) throw ConfigError("must be in [0, 1]", "fake_host_fraction");
    if (inj.perEpoch > 0 && !c.pipeline.differenceOutput.enabled)
        throw ConfigError("fakes need differences (difference = true)", "fakes_per_epoch");
    c.pipeline.differenceOutput.directory = path("difference_dir");
    if (c.pipeline.differenceOutput.directory.empty()) c.pipeline.differenceOutput.directory = c.output + ".diff";
    c.run.outputPath = c.output;
    c.run.configText = dumpConfig(c);
    c.run.resultConfig = resultConfig(c);
    return c;
}

const std::vector<std::string>& operationalKeys() {
    static const std::vector<std::string> keys = {
        "output", "log_level", "checkpoint_targets", "checkpoint_seconds", "scheduler_computes",
        "prefetch", "progress_seconds", "max_retries", "fft_effort", "fft_wisdom",
        "cache", "fetch_on_demand", "mast_url", "irsa_url", "http_max_per_host", "http_attempts", "http_stall_seconds"};
    return keys;
}

std::string resultConfig(const JobConfig& c) {
    const auto& operational = operationalKeys();
    std::string out;
    const std::string all = dumpConfig(c);  // split() returns views into it
    for (auto line : text::split(all, '\n')) {
        const auto trimmed = text::trim(line);
        if (trimmed.empty() || trimmed.front() == '#') continue;
        const auto key = std::string(text::trim(trimmed.substr(0, trimmed.find('='))));
        if (std::find(operational.begin(), operational.end(), key) != operational.end()) continue;
        out.append(trimmed).push_back('\n');
    }
    return out;
}

std::string dumpConfig(const JobConfig& c) {
    std::ostringstream o;
    const auto& s = c.pipeline.select;
    auto b = [](bool v) { return v ? "true" : "false"; };
    o << "# astrid resolved job configuration\n";
    if (!c.jobFile.empty()) o << "# from " << c.jobFile << "\n";
    o << "catalog = " << c.catalog << "\n"
      << "catalog_format = " << c.catalogFormat << "\n"
      << "archive = " << c.archive << "\n";
    if (!c.manifest.empty())
        o << "manifest = " << c.manifest << "\n"
          << "cache = " << c.cache << "\n"
          << "fetch_on_demand = " << b(c.fetchOnDemand) << "\n"
          << "mast_url = " << c.mastUrl << "\n"
          << "irsa_url = " << c.irsaUrl << "\n"
          << "http_max_per_host = " << c.httpMaxPerHost << "\n"
          << "http_attempts = " << c.httpAttempts << "\n"
          << "http_stall_seconds = " << c.httpStallSeconds << "\n";
    o
      << "output = " << c.output << "\n";
    if (c.filter.minYear) o << "min_year = " << *c.filter.minYear << "\n";
    if (c.filter.limit) o << "limit = " << *c.filter.limit << "\n";
    if (!c.filter.types.empty()) {
        o << "types = ";
        for (std::size_t i = 0; i < c.filter.types.size(); ++i) o << (i ? "," : "") << c.filter.types[i];
        o << "\n";
    }
    if (c.slice) o << "slice = " << c.slice->index << "/" << c.slice->count << "\n";
    o << "days_before = " << s.daysBefore << "\n"
      << "ref_margin_days = " << s.refMarginDays << "\n"
      << "days_after = " << s.daysAfter << "\n"
      << "max_reference = " << s.maxReference << "\n"
      << "max_science = " << s.maxScience << "\n"
      << "require_both = " << b(s.requireBoth) << "\n"
      << "filter = " << s.filter << "\n"
      << "min_overlap = " << s.minOverlap << "\n"
      << "max_bad_fraction = " << c.pipeline.validate.maxBadFraction << "\n"
      << "target_margin_px = " << c.pipeline.validate.targetMarginPx << "\n"
      << "difference = " << b(c.pipeline.differenceOutput.enabled) << "\n"
      << "write_difference_fits = " << b(c.pipeline.differenceOutput.writeFits) << "\n"
      << "difference_dir = " << c.pipeline.differenceOutput.directory << "\n"
      << "zogy_tile_px = " << c.pipeline.difference.zogy.tilePx << "\n"
      << "zogy_remove_offset = " << b(c.pipeline.difference.zogy.removeOffset) << "\n"
      << "interpolate_max_run = " << c.pipeline.prepare.interpolateMaxRun << "\n"
      << "detection_threshold = " << c.pipeline.difference.detectionThreshold << "\n"
      << "detect = " << b(c.pipeline.detectCandidates) << "\n"
      << "forced_photometry = " << b(c.pipeline.photometry.enabled) << "\n"
      << "zero_point = " << (std::isfinite(c.pipeline.photometry.zeroPoint) ? std::to_string(c.pipeline.photometry.zeroPoint) : std::string("nan")) << "\n"
      << "upper_limit_sigma = " << c.pipeline.photometry.upperLimitSigma << "\n"
      << "source_catalog = " << c.sourceCatalog << "\n"
      << "reference_catalog = " << c.referenceCatalog << "\n"
      << "training_cutouts = " << b(c.pipeline.training.enabled) << "\n"
      << "cutout_size = " << c.pipeline.training.layout.width << "\n"
      << "cutout_scorr = " << b(c.pipeline.training.layout.planeCount() > 3) << "\n"
      << "cutout_edge = " << (c.pipeline.training.skipEdge ? "skip" : "pad") << "\n"
      << "fakes_per_epoch = " << c.pipeline.injection.perEpoch << "\n"
      << "fake_dmag_min = " << c.pipeline.injection.dmagMin << "\n"
      << "fake_dmag_max = " << c.pipeline.injection.dmagMax << "\n"
      << "fake_host_fraction = " << c.pipeline.injection.hostFraction << "\n"
      << "fake_seed = " << c.pipeline.injection.seed << "\n"
      << "fft_effort = " << c.fftEffort << "\n"
      << "fft_wisdom = " << c.run.fftWisdomPath << "\n"
      << "checkpoint_targets = " << c.run.checkpointTargets << "\n"
      << "checkpoint_seconds = " << c.run.checkpointSeconds << "\n"
      << "scheduler_computes = "
      << (c.run.schedulerComputes == runner::SchedulerComputes::Auto  ? "auto"
          : c.run.schedulerComputes == runner::SchedulerComputes::Yes ? "yes"
                                                                        : "no")
      << "\n"
      << "prefetch = " << c.run.prefetch << "\n"
      << "progress_seconds = " << c.run.progressSeconds << "\n"
      << "max_retries = " << c.run.maxRetries << "\n"
      << "log_level = " << c.logLevel << "\n";
    return o.str();
}

}  // namespace astrid::app
