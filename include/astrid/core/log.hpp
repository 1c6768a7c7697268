#pragma once
// The logging facade: named, levelled, rank-tagged loggers (spdlog). Library code never prints to
// stdout; it asks for a logger by name ("astrid.fits", "astrid.runner", ...).
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace astrid::log {

enum class Level { Trace, Debug, Info, Warn, Error, Off };

struct LogConfig {
    Level level = Level::Info;
    int rank = 0;          ///< MPI rank tag; rank 0 logs to stderr at `level`
    int nRanks = 1;
    Level otherRanksLevel = Level::Warn;  ///< ranks != 0 log only this and above to stderr
};

/// Applies a configuration to every existing and future logger. Call once, early (app/ does).
void configure(const LogConfig& config);

/// Parses "trace|debug|info|warn|error|off"; throws ConfigError naming `key` otherwise.
Level parseLevel(std::string_view text, std::string_view key = "log_level");

/// A logger named `name` (created on first use with the configured sinks and level).
std::shared_ptr<spdlog::logger> get(const std::string& name);

}  // namespace astrid::log
