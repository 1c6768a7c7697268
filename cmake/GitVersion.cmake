# Run at build time (cmake -P): writes version.cpp with the current git sha, touching the file only
# when the text changes so an unchanged tree does not relink. Inputs: SRC, DST, VERSION, SOURCE_DIR.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY "${SOURCE_DIR}"
  OUTPUT_VARIABLE ASTRID_GIT_SHA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT ASTRID_GIT_SHA)
  set(ASTRID_GIT_SHA "unknown")
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY "${SOURCE_DIR}"
    OUTPUT_VARIABLE _dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_dirty)
    string(APPEND ASTRID_GIT_SHA "-dirty")
  endif()
endif()
set(PROJECT_VERSION "${VERSION}")
configure_file("${SRC}" "${DST}.tmp" @ONLY)
file(COPY_FILE "${DST}.tmp" "${DST}" ONLY_IF_DIFFERENT)
