# astrid_add_module(NAME SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# One static library per module, named astrid_<name>, aliased astrid::<name>.
function(astrid_add_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(astrid_${name} STATIC ${ARG_SOURCES})
  add_library(astrid::${name} ALIAS astrid_${name})
  target_include_directories(astrid_${name} PUBLIC "${PROJECT_SOURCE_DIR}/include")
  target_compile_features(astrid_${name} PUBLIC cxx_std_20)
  target_link_libraries(astrid_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE astrid_warnings ${ARG_PRIVATE_DEPS})
  set_target_properties(astrid_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# astrid_add_gtest(NAME SOURCES ... LIBS ... [LABELS ...] [RANKS n1 n2 ...] [TIMEOUT s] [OWN_MAIN])
# Without RANKS: one serial ctest per GoogleTest binary. With RANKS: one ctest per rank count,
# run through mpiexec (as root and oversubscribed when needed), labelled mpi and np<N>.
function(astrid_add_gtest name)
  cmake_parse_arguments(ARG "OWN_MAIN" "TIMEOUT" "SOURCES;LIBS;LABELS;RANKS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock astrid_warnings)
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/tests")
  if(NOT ARG_OWN_MAIN)
    target_link_libraries(${name} PRIVATE GTest::gtest_main)
  endif()
  target_compile_definitions(${name} PRIVATE
    ASTRID_SHARED_DATA_DIR="${PROJECT_SOURCE_DIR}/../shared/data"
    ASTRID_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  if(NOT ARG_RANKS)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
  else()
    foreach(n IN LISTS ARG_RANKS)
      add_test(NAME ${name}_np${n} COMMAND ${MPIEXEC_EXECUTABLE} ${ASTRID_MPIEXEC_FLAGS} -n ${n} $<TARGET_FILE:${name}>)
      set_tests_properties(${name}_np${n} PROPERTIES LABELS "mpi;np${n};${ARG_LABELS}"
        TIMEOUT ${ARG_TIMEOUT} PROCESSORS 2 ENVIRONMENT "${ASTRID_MPI_TEST_ENV}")
    endforeach()
  endif()
endfunction()

# mpiexec flags for tests: root is normal in containers and CI; ranks may exceed cores.
set(ASTRID_MPIEXEC_FLAGS --oversubscribe)
execute_process(COMMAND id -u OUTPUT_VARIABLE _astrid_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_astrid_uid STREQUAL "0")
  list(APPEND ASTRID_MPIEXEC_FLAGS --allow-run-as-root)
endif()
set(ASTRID_MPI_TEST_ENV "OMPI_MCA_mpi_yield_when_idle=1;OMPI_MCA_rmaps_base_oversubscribe=1")
