#pragma once
// Joins the outputs of a job array's slices (job key `slice = i/N`) into one run file with the
// same schema, as if one job had processed the whole catalog (`astrid merge`, docs/running.md).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace astrid::output {

struct MergeOptions {
    /// Configuration keys that may differ between slices besides `slice` and `output` (those that
    /// do not change results: logging, checkpoint intervals, scheduling, retries, FFT planning).
    /// `difference_dir` may differ too when every slice has its default, `<output>.diff`.
    std::vector<std::string> ignoredKeys;
    bool allowMissing = false;  ///< merge even when some of the N slices are not given
    bool overwrite = false;     ///< replace an existing output file
    std::string commandLine;    ///< stored in the merged file's `command_line` attribute
};

struct MergeSummary {
    std::size_t sliceCount = 0;            ///< N of `slice = i/N`
    std::vector<std::size_t> merged;       ///< slice indices merged, ascending
    std::vector<std::size_t> missing;      ///< slice indices of 0..N-1 not given (allowMissing)
    std::int64_t targetsOk = 0, targetsFailed = 0, targetsSkipped = 0;
    std::uint64_t observations = 0, differenceRuns = 0, candidates = 0, forcedPhotometry = 0, injections = 0, triplets = 0,
                  catalogIssues = 0;
};

/// Writes `outputPath` from the run files `inputs` (any order): the rows of every table of every
/// slice (in slice order), `/catalog_issues` once (it is the whole catalog's in every slice), the
/// first slice's configuration without `slice` and with `output` = outputPath, the summed end
/// counts and `merged_from` (the inputs, one per line). The file is written beside the output
/// under a temporary name and renamed into place only when complete.
/// Throws DataError, naming the files and what is wrong, when: an input is not complete (status
/// attribute other than "complete": resume its job first), has another schema version, has no
/// `slice` key, belongs to another array (another N) or repeats a slice index; configurations
/// differ in a key other than those allowed (the keys and both values are named); catalog issues
/// differ; a target id appears in two slices; slices are missing (unless allowMissing); the output
/// exists (unless overwrite) or is one of the inputs. Throws H5Error naming the file when an input
/// cannot be read or the output cannot be written.
MergeSummary mergeSlices(const std::vector<std::string>& inputs, const std::string& outputPath,
                         const MergeOptions& options);

}  // namespace astrid::output
