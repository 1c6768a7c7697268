#pragma once
// Job configuration: an INI job file (boost::program_options) whose every key can be overridden on
// the command line. Only app/ knows this format; the library takes the plain structs it fills.
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "astrid/catalog/catalog.hpp"
#include "astrid/pipeline/config.hpp"
#include "astrid/runner/runner.hpp"

namespace astrid::app {

struct JobConfig {
    std::string jobFile;  ///< as given; "" when everything came from the command line
    std::string catalog;
    std::string catalogFormat = "auto";
    std::string archive;
    // Remote archives (issue #7): a query manifest + download cache instead of a local archive.
    std::string manifest, cache;
    bool fetchOnDemand = false;
    std::string mastUrl, irsaUrl;  ///< mirrors: product URLs of the manifest's endpoints are rewritten to these
    int httpMaxPerHost = 4;
    int httpAttempts = 6;
    double httpStallSeconds = 60.0;
    std::string output = "astrid_run.h5";
    std::string sourceCatalog, referenceCatalog;  ///< job source / reference catalogs ("" = none)
    catalog::CatalogFilter filter;
    std::optional<catalog::Slice> slice;  ///< job key `slice = i/N`: applied after the filter
    pipeline::PipelineConfig pipeline;
    runner::RunOptions run;  ///< outputPath/configText/commandLine filled by finalize()
    std::string logLevel = "info";
    std::string fftEffort = "measure";
};

/// The option set of the job keys (names as in the job file).
boost::program_options::options_description jobOptions();

/// Parses `--config FILE` plus overrides from argv (after the subcommand). Command-line values win
/// over the file; paths in the file are relative to the file's directory. Throws ConfigError
/// naming the key (and file) for unknown keys, bad values, and a missing job file.
JobConfig parseJobConfig(int argc, const char* const* argv, bool* dumpConfig, bool* help);

/// The resolved configuration as a job file (what --dump-config prints and the output stores).
std::string dumpConfig(const JobConfig& config);

/// The lines of dumpConfig() that shape results: without the output path, logging, checkpoint,
/// scheduling, retry and FFT-planning keys, which a resume may change. A resume must match them.
std::string resultConfig(const JobConfig& config);
/// The keys resultConfig() leaves out: those a resume (or the slices of one merge) may change.
const std::vector<std::string>& operationalKeys();

catalog::CatalogFormat parseCatalogFormat(const std::string& text);
/// "i/N" (0 <= i < N) as a catalog::Slice; throws ConfigError naming the key `slice`.
catalog::Slice parseSlice(const std::string& text);

}  // namespace astrid::app
