#pragma once
// MPI set-up for the whole process (only the runner and main know MPI). mpi.h never appears here.
#include <memory>
#include <string>
#include <vector>

namespace astrid::runner {

/// Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI; the compute thread
/// never does), duplicates MPI_COMM_WORLD with MPI_ERRORS_RETURN, and finalises on destruction.
class MpiSession {
public:
    MpiSession(int& argc, char**& argv);
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    int rank() const noexcept;
    int size() const noexcept;
    /// The duplicated communicator as an opaque pointer to an MPI_Comm (runner-internal use).
    void* comm() const noexcept;

    /// Rank `root`'s string, on every rank. Collective.
    std::string broadcast(const std::string& value, int root = 0) const;
    /// Collective barrier.
    void barrier() const;
    /// Ends every rank with `code`: only main() calls this, for errors no rank can recover from.
    [[noreturn]] void abort(int code) const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace astrid::runner
