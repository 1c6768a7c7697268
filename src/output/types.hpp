#pragma once
// HDF5 compound and enum types of the schema (private).
#include "h5.hpp"

namespace astrid::output::h5types {
h5::Handle targetRow();
h5::Handle observationRow();
h5::Handle catalogIssueRow();
h5::Handle differenceRunRow();
h5::Handle candidateRow();
h5::Handle forcedPhotometryRow();
h5::Handle injectionRow();
}  // namespace astrid::output::h5types
