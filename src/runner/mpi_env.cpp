// One of the two translation units of astrid that include mpi.h (with runner.cpp).
#include <mpi.h>

#include "astrid/core/error.hpp"
#include "astrid/runner/mpi_session.hpp"
#include "mpi_check.hpp"

namespace astrid::runner {

struct MpiSession::Impl {
    MPI_Comm comm = MPI_COMM_NULL;
    int rank = 0, size = 1;
    bool initializedHere = false;
};

void mpiCheck(int code, const char* what) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    throw MpiError(std::string(what) + ": " + std::string(text, static_cast<std::size_t>(len)));
}

MpiSession::MpiSession(int& argc, char**& argv) : impl_(std::make_unique<Impl>()) {
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        int provided = 0;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
        impl_->initializedHere = true;
        if (provided < MPI_THREAD_FUNNELED) throw MpiError("the MPI library does not provide MPI_THREAD_FUNNELED");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm);
    MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl_->comm, &impl_->rank);
    MPI_Comm_size(impl_->comm, &impl_->size);
}

MpiSession::~MpiSession() {
    if (impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (impl_->initializedHere && !finalized) MPI_Finalize();
}

int MpiSession::rank() const noexcept { return impl_->rank; }
int MpiSession::size() const noexcept { return impl_->size; }
void* MpiSession::comm() const noexcept { return &impl_->comm; }

std::string MpiSession::broadcast(const std::string& value, int root) const {
    unsigned long long n = value.size();
    mpiCheck(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, impl_->comm), "MPI_Bcast(size)");
    std::string out = impl_->rank == root ? value : std::string(n, '\0');
    if (n > 0) {
        // Large catalogs could exceed INT_MAX bytes only in theory; chunk to be safe.
        const unsigned long long chunk = 1ull << 30;
        for (unsigned long long off = 0; off < n; off += chunk) {
            const int len = static_cast<int>(std::min(chunk, n - off));
            mpiCheck(MPI_Bcast(out.data() + off, len, MPI_CHAR, root, impl_->comm), "MPI_Bcast(data)");
        }
    }
    return out;
}

void MpiSession::barrier() const { mpiCheck(MPI_Barrier(impl_->comm), "MPI_Barrier"); }

void MpiSession::abort(int code) const noexcept {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
}

}  // namespace astrid::runner
