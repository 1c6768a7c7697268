#include "astrid/training/split.hpp"

#include <cmath>
#include <string>

#include "astrid/core/error.hpp"

namespace astrid::training {

std::uint64_t splitHash(std::string_view key) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
    for (const char c : key) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;  // FNV-1a 64 prime
    }
    // splitmix64 finaliser (Steele, Lea & Flood 2014)
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

double splitUnit(std::string_view key) noexcept {
    return static_cast<double>(splitHash(key) >> 11) * 0x1.0p-53;
}

Split assignSplit(std::string_view key, const SplitFractions& f) {
    if (!(f.train >= 0.0) || !(f.validation >= 0.0) || f.train + f.validation > 1.0 + 1e-12)
        throw ConfigError("split fractions must be >= 0 with train + validation <= 1 (train " + std::to_string(f.train) +
                              ", validation " + std::to_string(f.validation) + ")",
                          "split_train");
    const double u = splitUnit(key);
    if (u < f.train) return Split::Train;
    if (u < f.train + f.validation) return Split::Validation;
    return Split::Test;
}

std::string_view splitName(Split split) noexcept {
    switch (split) {
        case Split::Train: return "train";
        case Split::Validation: return "validation";
        case Split::Test: return "test";
    }
    return "?";
}

}  // namespace astrid::training
