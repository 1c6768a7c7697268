#include <algorithm>
#include <system_error>

#include "astrid/archive/archive.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/fits/fits_file.hpp"

namespace astrid::archive {
namespace fs = std::filesystem;

namespace {
bool isFitsName(const fs::path& p) {
    std::string name = text::toLower(p.filename().string());
    for (const char* z : {".gz", ".fz"})
        if (name.size() > 3 && name.ends_with(z)) name.resize(name.size() - 3);
    return name.ends_with(".fits") || name.ends_with(".fit") || name.ends_with(".fts");
}
}  // namespace

LocalArchive::LocalArchive(fs::path root) : root_(std::move(root)) {
    std::error_code ec;
    if (!fs::is_directory(root_, ec)) throw IoError("archive directory '" + root_.string() + "' does not exist");
}

fs::path LocalArchive::targetDirectory(const catalog::Target& target) const {
    std::string name = target.name;
    std::replace_if(name.begin(), name.end(), [](char c) { return c == '/' || c == ' ' || c == '\\'; }, '_');
    return root_ / name;
}

std::vector<Observation> LocalArchive::listObservations(const catalog::Target& target) {
    const fs::path dir = targetDirectory(target);
    std::vector<fs::path> files;
    std::error_code ec;
    if (fs::is_directory(dir, ec)) {
        for (const auto& entry : fs::directory_iterator(dir, ec))
            if (entry.is_regular_file() && isFitsName(entry.path())) files.push_back(entry.path());
        if (ec) throw IoError("cannot list archive directory '" + dir.string() + "': " + ec.message());
    }
    std::sort(files.begin(), files.end());
    std::vector<Observation> out;
    out.reserve(files.size());
    for (std::size_t i = 0; i < files.size(); ++i) {
        Observation o;
        const std::string path = files[i].string();
        try {
            auto f = fits::FitsFile::open(path);
            f.select({});
            const auto shape = f.imageShape();
            o = observationFromHeader(f.readHeader(), static_cast<int>(shape.at(0)), static_cast<int>(shape.at(1)));
            o.hdu = f.currentHdu();
        } catch (const Error& e) {
            o.status = ObsStatus::Invalid;
            o.statusReason = e.what();
        }
        o.fitsPath = path;
        o.targetId = target.id;
        o.obsId = target.id * 10000 + static_cast<std::int64_t>(i);
        out.push_back(std::move(o));
    }
    return out;
}

}  // namespace astrid::archive
