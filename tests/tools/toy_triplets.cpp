// A TOY training file, written through astrid's own API (TripletBuilder + RunFile::appendTraining),
// so the PyTorch example and the `training` ctest have an astrid-made /training file before the
// campaign writes fakes. It is NOT the issue #5 measurement (fakes vs real subtraction artifacts
// from a campaign): the "difference" is a plain science - reference of two rendered images with
// different seeing, real = point sources added to the science image, bogus = the residuals of
// stars, cosmic-ray hits and a bad column segment, blank_sky = random empty positions.
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>

#include "astrid/output/run_file.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/training/triplet.hpp"

using namespace astrid;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: toy_triplets OUT.h5 [targets=40] [seed=1]\n";
        return 1;
    }
    const std::string out = argv[1];
    const int nTargets = argc > 2 ? std::atoi(argv[2]) : 40;
    const unsigned seed = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 1u;
    constexpr int kSize = 192;
    constexpr double kSky = 100.0;  // ADU, gain 1: noise sigma 10

    training::TripletLayout layout;  // science, reference, difference; 63 x 63
    layout.orientation = "toy_pixel_grid (no WCS; a test fixture)";
    layout.pixelUnits = "ADU, sky subtracted";
    output::RunMetadata meta;
    meta.configText = "toy_triplets targets=" + std::to_string(nTargets) + " seed=" + std::to_string(seed);
    meta.commandLine = "toy_triplets " + out;
    meta.training = layout;
    auto file = output::RunFile::create(out, meta);

    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> pos(20.0, kSize - 20.0), u01(0.0, 1.0);
    std::normal_distribution<double> gauss(0.0, 1.0);
    std::size_t counts[3] = {0, 0, 0};
    for (int t = 0; t < nTargets; ++t) {
        const sim::PsfRenderer refPsf(sim::MoffatPsf{2.8 + 0.4 * u01(rng), 3.0});
        const sim::PsfRenderer sciPsf(sim::MoffatPsf{3.4 + 0.8 * u01(rng), 3.0});
        Image<double> ref(kSize, kSize, 0.0), sci(kSize, kSize, 0.0);
        struct Spot {
            double x, y;
            training::Label label;
            training::LabelSource source;
            double mag;
        };
        std::vector<Spot> spots;
        for (int s = 0; s < 30; ++s) {
            const double x = pos(rng), y = pos(rng), flux = std::pow(10.0, 3.3 + 1.7 * u01(rng));
            refPsf.add(ref, x, y, flux);
            sciPsf.add(sci, x, y, flux * (1.0 + 0.03 * gauss(rng)));  // a little flux-scale error
            if (flux > 1e4 && spots.size() < 30)
                spots.push_back({x, y, training::Label::Bogus, training::LabelSource::UnmatchedCandidate, NAN});
        }
        for (int k = 0; k < 8; ++k) {  // transients: real
            const double x = pos(rng), y = pos(rng), mag = 19.0 + 2.5 * u01(rng);
            sciPsf.add(sci, x, y, std::pow(10.0, -0.4 * (mag - 27.0)));
            spots.push_back({x, y, training::Label::Real, training::LabelSource::InjectedFake, mag});
        }
        Image<float> sciF(kSize, kSize), refF(kSize, kSize), diff(kSize, kSize);
        for (int y = 0; y < kSize; ++y)
            for (int x = 0; x < kSize; ++x) {
                sciF(x, y) = static_cast<float>(sci(x, y) + std::sqrt(kSky + std::max(0.0, sci(x, y))) * gauss(rng));
                refF(x, y) = static_cast<float>(ref(x, y) + 0.5 * std::sqrt(kSky + std::max(0.0, ref(x, y))) * gauss(rng));
            }
        for (int k = 0; k < 4; ++k) {  // cosmic rays on the science image: bogus
            const int x = static_cast<int>(pos(rng)), y = static_cast<int>(pos(rng));
            sciF(x, y) += static_cast<float>(400 + 2000 * u01(rng));
            if (u01(rng) < 0.5) sciF(x + 1, y) += static_cast<float>(300 * u01(rng));
            spots.push_back({double(x), double(y), training::Label::Bogus, training::LabelSource::UnmatchedCandidate, NAN});
        }
        {  // a bad column segment: bogus
            const int x = static_cast<int>(pos(rng)), y0 = static_cast<int>(pos(rng)) - 10;
            for (int y = std::max(0, y0); y < std::min(kSize, y0 + 25); ++y) sciF(x, y) += 150.0f;
            spots.push_back({double(x), double(y0 + 12), training::Label::Bogus, training::LabelSource::UnmatchedCandidate, NAN});
        }
        for (int k = 0; k < 3; ++k)  // blank sky (may land on faint wings; labelled as such)
            spots.push_back({pos(rng), pos(rng), training::Label::BlankSky, training::LabelSource::BlankSky, NAN});
        for (int y = 0; y < kSize; ++y)
            for (int x = 0; x < kSize; ++x) diff(x, y) = sciF(x, y) - refF(x, y);

        output::TrainingBatch batch(layout);
        const std::string name = "toy" + std::to_string(t);
        for (std::size_t i = 0; i < spots.size(); ++i) {
            const Spot& s = spots[i];
            training::TripletBuilder b(layout);
            b.pasteCentred(0, sciF, s.x, s.y);
            b.pasteCentred(1, refF, s.x, s.y);
            b.pasteCentred(2, diff, s.x, s.y);
            training::TripletMeta m;
            m.targetId = t;
            m.targetName = name;
            m.obsId = t;
            m.candidateIndex = static_cast<std::int32_t>(i);
            m.x = s.x;
            m.y = s.y;
            m.filter = "toy";
            m.labelSource = s.source;
            m.injectedMag = s.mag;
            m.split = training::assignSplit(name, layout.split);
            batch.add(b.finish(s.label, m));
            ++counts[static_cast<int>(s.label)];
        }
        file.appendTraining(batch, 0, batch.size());
    }
    file.finish({});
    std::cout << out << ": " << counts[1] << " real, " << counts[0] << " bogus, " << counts[2] << " blank-sky triplets from "
              << nTargets << " toy targets\n";
    return 0;
}
