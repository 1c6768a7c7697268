#pragma once
// Reads a run file back (serially; a file written in parallel reads like any other). Used by
// `astrid inspect` and the tests; h5py/astropy users need nothing from astrid.
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "astrid/output/schema.hpp"

namespace astrid::output {

class RunReader {
public:
    /// Throws H5Error naming the path when it is not an HDF5 file astrid can read.
    explicit RunReader(const std::string& path);
    RunReader(RunReader&&) noexcept;
    ~RunReader();

    std::optional<std::string> stringAttribute(const std::string& name) const;
    std::optional<double> numberAttribute(const std::string& name) const;
    /// Names of the 1-D table datasets at the root, sorted.
    std::vector<std::string> tables() const;
    std::uint64_t rowCount(const std::string& table) const;

    std::vector<TargetRow> targets() const;
    std::vector<ObservationRow> observations() const;
    std::vector<CatalogIssueRow> catalogIssues() const;
    std::vector<DifferenceRunRow> differenceRuns() const;
    std::vector<CandidateRow> candidates() const;
    std::vector<ForcedPhotometryRow> forcedPhotometry() const;
    std::vector<InjectionRow> injections() const;

    /// Writes any compound table as CSV (header of member names; enums by name; strings quoted
    /// when needed). Throws H5Error when the table does not exist.
    void writeCsv(const std::string& table, std::ostream& out) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace astrid::output
