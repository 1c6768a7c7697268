#include "astrid/core/log.hpp"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "astrid/core/error.hpp"

namespace astrid::log {
namespace {
std::mutex g_mutex;
LogConfig g_config;

spdlog::level::level_enum toSpd(Level level) {
    switch (level) {
        case Level::Trace: return spdlog::level::trace;
        case Level::Debug: return spdlog::level::debug;
        case Level::Info: return spdlog::level::info;
        case Level::Warn: return spdlog::level::warn;
        case Level::Error: return spdlog::level::err;
        case Level::Off: return spdlog::level::off;
    }
    return spdlog::level::info;
}

std::string pattern(const LogConfig& c) {
    if (c.nRanks > 1) return "[%H:%M:%S.%e] [r" + std::to_string(c.rank) + "] [%n] [%^%l%$] %v";
    return "[%H:%M:%S.%e] [%n] [%^%l%$] %v";
}

void apply(spdlog::logger& logger) {
    logger.set_level(toSpd(g_config.rank == 0 ? g_config.level : g_config.otherRanksLevel));
    logger.set_pattern(pattern(g_config));
}
}  // namespace

void configure(const LogConfig& config) {
    std::lock_guard lock(g_mutex);
    g_config = config;
    spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { apply(*l); });
}

Level parseLevel(std::string_view text, std::string_view key) {
    if (text == "trace") return Level::Trace;
    if (text == "debug") return Level::Debug;
    if (text == "info") return Level::Info;
    if (text == "warn" || text == "warning") return Level::Warn;
    if (text == "error") return Level::Error;
    if (text == "off") return Level::Off;
    throw ConfigError("unknown log level '" + std::string(text) + "' (trace, debug, info, warn, error, off)",
                      std::string(key));
}

std::shared_ptr<spdlog::logger> get(const std::string& name) {
    std::lock_guard lock(g_mutex);
    if (auto existing = spdlog::get(name)) return existing;
    auto logger = spdlog::stderr_color_mt(name);
    apply(*logger);
    return logger;
}

}  // namespace astrid::log
