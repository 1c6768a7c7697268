#pragma once
// Where a target's images come from. LocalArchive reads a directory tree; HTTP archives (MAST,
// IRSA) will implement the same interface.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "astrid/archive/observation.hpp"
#include "astrid/catalog/catalog.hpp"
#include "astrid/fits/header.hpp"

namespace astrid::archive {

class Archive {
public:
    virtual ~Archive() = default;
    /// Every observation the archive holds for the target, with metadata from its header. A file
    /// whose header cannot be read is listed with status Invalid and the reason, never skipped.
    /// Throws IoError when the archive itself is unusable.
    virtual std::vector<Observation> listObservations(const catalog::Target& target) = 0;
    /// A local path to the observation's file (a no-op for a local archive; a download later).
    virtual std::string fetch(const Observation& obs) = 0;
    /// Human-readable description for logs ("local:/data/archive").
    virtual std::string describe() const = 0;
};

/// A directory with one sub-directory per target, named after the target, holding FITS files
/// (*.fits, *.fit, *.fts, optionally .gz or .fz). Files are listed in name order.
class LocalArchive final : public Archive {
public:
    /// Throws IoError when `root` is not a readable directory.
    explicit LocalArchive(std::filesystem::path root);
    std::vector<Observation> listObservations(const catalog::Target& target) override;
    std::string fetch(const Observation& obs) override { return obs.fitsPath; }
    std::string describe() const override { return "local:" + root_.string(); }
    /// The directory a target's files live in (target names are sanitised: '/' and spaces -> '_').
    std::filesystem::path targetDirectory(const catalog::Target& target) const;

private:
    std::filesystem::path root_;
};

/// Fills an Observation's metadata from a FITS header and its WCS (centre, pixel scale).
/// Missing keys leave NaN/empty; it throws only for values present but malformed (FitsError).
Observation observationFromHeader(const fits::Header& header, int width, int height);

}  // namespace astrid::archive
