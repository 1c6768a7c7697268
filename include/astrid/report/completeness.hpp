#pragma once
// Detection completeness of a run from its injected fakes (issue #5): efficiency (recovered /
// injected) per filter in bins of true S/N, of magnitude relative to the 5-sigma limit and of
// magnitude; written into the run file as /completeness and drawn as a PNG beside it (PLplot).
// Plain library, no MPI: the runner's rank 0 calls writeCompletenessReport after the run.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "astrid/output/schema.hpp"

namespace astrid::report {

enum class BinKind : std::int8_t { Snr = 0, DeltaMag = 1, Mag = 2 };

/// One bin of one curve; /completeness rows.
struct CompletenessRow {
    std::array<char, 16> filter;  ///< the science epochs' filter; "all" for every filter together
    std::int8_t binKind;          ///< BinKind: 0 true S/N, 1 mag - 5-sigma limit, 2 magnitude
    double lo, hi;                ///< bin edges
    std::int64_t injected, recovered;
    double efficiency;            ///< recovered / injected (NaN when nothing was injected)
    double efficiencyErr;         ///< binomial 1 sigma, sqrt(e (1 - e) / n), at least 1/(2n) (never 0)
};

/// What users quote from the curves ("all" filters).
struct CompletenessSummary {
    std::int64_t injected = 0, recovered = 0;
    double efficiencyAtSnr8 = 0.0;   ///< over every fake with true S/N >= 8
    std::int64_t injectedAtSnr8 = 0;
    double snr50 = 0.0;              ///< true S/N where the S/N curve crosses 50% (linear; NaN if it does not)
    double dmag50 = 0.0;             ///< mag - limit where the relative curve crosses 50% (NaN without zero points)
};

/// The curves from the injections and the observations (which give each science epoch's filter).
std::vector<CompletenessRow> completeness(const std::vector<output::InjectionRow>& injections,
                                          const std::vector<output::ObservationRow>& observations);
CompletenessSummary summarize(const std::vector<CompletenessRow>& rows,
                              const std::vector<output::InjectionRow>& injections);

/// Reads /injections and /observations of a finished run file, writes /completeness (replacing an
/// old one) with the summary as its attributes, and draws `pngPath` (efficiency against true S/N
/// and against magnitude, one curve per filter). Does nothing when the run has no injections.
/// Returns the summary. Throws H5Error / IoError naming the file.
CompletenessSummary writeCompletenessReport(const std::string& runPath, const std::string& pngPath);

/// The PNG alone (PLplot, pngcairo). Throws IoError when it cannot be written.
void plotCompleteness(const std::vector<CompletenessRow>& rows, const CompletenessSummary& summary,
                      const std::string& pngPath, const std::string& title);

}  // namespace astrid::report
