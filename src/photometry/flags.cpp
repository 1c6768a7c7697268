// PhotFlag names (flags.hpp).
#include "astrid/photometry/flags.hpp"

#include <utility>

namespace astrid::photometry {

std::string flagNames(std::uint32_t flags) {
    static constexpr std::pair<PhotFlag, const char*> kNames[] = {
        {PhotFlag::OffImage, "off_image"},         {PhotFlag::Edge, "edge"},
        {PhotFlag::Masked, "masked"},              {PhotFlag::Saturated, "saturated"},
        {PhotFlag::NoBackground, "no_background"}, {PhotFlag::TooFewPixels, "too_few_pixels"},
        {PhotFlag::FitFailed, "fit_failed"},       {PhotFlag::UpperLimit, "upper_limit"},
        {PhotFlag::InvalidInput, "invalid_input"}, {PhotFlag::TooFewStars, "too_few_stars"},
        {PhotFlag::NoBaseline, "no_baseline"},
        {PhotFlag::Interpolated, "interpolated"},
    };
    std::string out;
    for (const auto& [flag, name] : kNames)
        if (hasFlag(flags, flag)) {
            if (!out.empty()) out += '|';
            out += name;
        }
    return out;
}

}  // namespace astrid::photometry
