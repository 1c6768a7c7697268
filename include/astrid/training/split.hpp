#pragma once
// The train/validation/test split of a training set, assigned per target by a stable hash of the
// target's key (its name), so every triplet of one target lands in the same split in every run,
// on every rank and in every file (an astrid campaign and a ZTF import alike). Reproducible
// outside astrid in a few lines (docs/training.md has the Python).
#include <cstdint>
#include <string_view>

namespace astrid::training {

enum class Split : std::int8_t { Train = 0, Validation = 1, Test = 2 };

/// Fractions of targets per split; test takes the rest (1 - train - validation).
struct SplitFractions {
    double train = 0.8;
    double validation = 0.1;
};

/// FNV-1a 64 of the key's bytes, then the splitmix64 finaliser (FNV-1a alone mixes its high bits
/// poorly for short keys that differ in the last character, e.g. "SN2005a"/"SN2005b").
std::uint64_t splitHash(std::string_view key) noexcept;

/// The top 53 bits of splitHash(key) as a double in [0, 1).
double splitUnit(std::string_view key) noexcept;

/// Train when splitUnit < train, validation when < train + validation, else test.
/// Throws ConfigError when a fraction is negative or train + validation > 1.
Split assignSplit(std::string_view key, const SplitFractions& fractions = {});

/// "train", "validation", "test".
std::string_view splitName(Split split) noexcept;

}  // namespace astrid::training
