#pragma once
// Which Archive a job reads: a local directory tree (`archive`) or a query manifest with its
// download cache (`manifest`, `cache`, `fetch_on_demand`, mirrors, HTTP limits).
#include <memory>

#include "app/config.hpp"
#include "astrid/archive/archive.hpp"
#include "astrid/archive/http.hpp"

namespace astrid::app {

/// A new Archive for one rank's compute thread. Throws IoError/DataError (unreadable archive,
/// manifest or cache).
std::unique_ptr<archive::Archive> makeArchive(const JobConfig& config);

/// The HTTP settings of a job (token from MAST_API_TOKEN; never logged).
archive::HttpConfig httpConfigOf(const JobConfig& config);

}  // namespace astrid::app
