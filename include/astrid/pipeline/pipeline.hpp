#pragma once
// processTarget(): the per-target pipeline as a pure function of (target, archive, config). No
// MPI and no global state: the runner calls it on every rank, tests call it on one core.
#include <cstdint>
#include <string>
#include <vector>

#include "astrid/archive/archive.hpp"
#include "astrid/catalog/catalog.hpp"
#include "astrid/pipeline/config.hpp"

namespace astrid::pipeline {

enum class TargetStatus : std::int8_t { Ok = 0, Failed = 1, Skipped = 2 };

/// Pipeline stages, in order; a failed target names the stage it failed in.
enum class Stage : std::int8_t { None = 0, Archive, Select, Load, Validate, Internal };
std::string stageName(Stage stage);

/// Everything a target produced: plain data the runner ships to the writer.
struct TargetResult {
    catalog::Target target;
    TargetStatus status = TargetStatus::Ok;
    Stage failStage = Stage::None;
    std::string failReason;
    std::vector<archive::Observation> observations;  ///< every listed observation with its status
    int nEpochs = 0;        ///< science epochs used
    double wallSeconds = 0.0;
    int rank = 0;           ///< set by the runner
};

/// Runs every stage for one target. Never throws for bad data: a failure is returned as
/// status Failed with the stage and a reason naming the file (or HDU/key) at fault.
TargetResult processTarget(const catalog::Target& target, archive::Archive& archive, const PipelineConfig& config);

/// Selection rule on its own (exposed for tests): marks observations Reference/Science/NotSelected.
/// Returns an empty string on success, otherwise why no usable pair exists.
std::string selectObservations(const catalog::Target& target, std::vector<archive::Observation>& observations,
                               const SelectionConfig& config);

}  // namespace astrid::pipeline
