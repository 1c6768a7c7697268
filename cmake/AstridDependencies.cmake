# Every external dependency is found here, once, and exposed as an IMPORTED target.
# Package names are listed in scripts/debian-packages.txt.
find_package(PkgConfig REQUIRED)
pkg_check_modules(CFITSIO REQUIRED IMPORTED_TARGET cfitsio)
pkg_check_modules(WCSLIB REQUIRED IMPORTED_TARGET wcslib)
pkg_check_modules(PLPLOT REQUIRED IMPORTED_TARGET plplot)  # completeness figures (report module)
pkg_check_modules(FFTW3 REQUIRED IMPORTED_TARGET fftw3 fftw3f)
# ZTF alert packets (Avro object container files) for `astrid import-ztf`; zlib inflates their
# gzipped FITS stamps in memory.
pkg_check_modules(AVRO REQUIRED IMPORTED_TARGET avro-c)
find_package(ZLIB REQUIRED)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)  # archive downloads (MAST, IRSA)

# fftw3-mpi ships neither a .pc file nor a CMake config on Debian. ZOGY runs in single precision,
# so the runner shares the single-precision planner's wisdom (fftwf_mpi_*).
find_library(FFTW3F_MPI_LIBRARY NAMES fftw3f_mpi REQUIRED)
find_path(FFTW3_MPI_INCLUDE_DIR NAMES fftw3-mpi.h REQUIRED)
add_library(astrid::fftw3_mpi INTERFACE IMPORTED)
target_link_libraries(astrid::fftw3_mpi INTERFACE "${FFTW3F_MPI_LIBRARY}" PkgConfig::FFTW3)
target_include_directories(astrid::fftw3_mpi INTERFACE "${FFTW3_MPI_INCLUDE_DIR}")

set(MPI_CXX_SKIP_MPICXX ON)
find_package(MPI REQUIRED COMPONENTS C)

# Parallel HDF5 only: a serial libhdf5-dev beside it would otherwise win through h5cc.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "astrid needs a parallel HDF5 (Debian: libhdf5-openmpi-dev); found a serial one "
    "at ${HDF5_C_INCLUDE_DIRS}. Remove the cached HDF5_* entries or the build directory after installing it.")
endif()

find_package(Boost 1.74 REQUIRED COMPONENTS program_options)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(Threads REQUIRED)
if(ASTRID_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(ASTRID_BUILD_BENCH)
  find_package(benchmark QUIET)
endif()
find_program(MPIEXEC_EXECUTABLE NAMES mpiexec mpirun)

# MPI through its C API only: keep Open MPI's deprecated C++ bindings out of every translation unit.
add_library(astrid::mpi INTERFACE IMPORTED)
target_link_libraries(astrid::mpi INTERFACE MPI::MPI_C)
target_compile_definitions(astrid::mpi INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)

# Parallel HDF5's headers include <mpi.h>: whoever uses HDF5 needs MPI's include path, and the
# library itself links libmpi. output/ gets it through this target but never calls MPI itself.
add_library(astrid::hdf5 INTERFACE IMPORTED)
target_link_libraries(astrid::hdf5 INTERFACE HDF5::HDF5 astrid::mpi)
