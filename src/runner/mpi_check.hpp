#pragma once
// Private: MPI return codes -> MpiError.
namespace astrid::runner {
void mpiCheck(int code, const char* what);
}
