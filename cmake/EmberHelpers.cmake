# ember_library(NAME SRCS ... DEPS ... PRIVATE_DEPS ...): a component library named ember_<NAME>.
function(ember_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(ember_${name} STATIC ${ARG_SRCS})
  target_include_directories(ember_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(ember_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  ember_warnings(ember_${name})
endfunction()

# ember_test(NAME SRCS ... DEPS ... LABEL unit [CPU_BACKEND] [EVERY_CPU_VARIANT]): a GoogleTest
# binary registered with ctest. CPU_BACKEND: its main() loads ggml's CPU backend first (tests
# that compute with ggml or load models). EVERY_CPU_VARIANT: registered once per CPU variant
# built (test names end in .<variant>), each run with EMBER_CPU_VARIANT=<variant>; a variant
# this CPU cannot run is reported as skipped (exit code 77, or a test's own GTEST_SKIP).
function(ember_test name)
  if(EMBER_FUZZ)  # the fuzz build compiles components for the fuzz targets, not their tests
    return()
  endif()
  cmake_parse_arguments(ARG "CPU_BACKEND;EVERY_CPU_VARIANT;NO_LEAK_CHECK" "LABEL" "SRCS;DEPS"
                        ${ARGN})
  # NO_LEAK_CHECK: ASan's leak check off for this test's processes (the caller says why); its
  # memory checks stay on. Appended to the preset's ASAN_OPTIONS, whose last flag wins.
  set(extra_props)
  if(ARG_NO_LEAK_CHECK)
    set(extra_props ENVIRONMENT_MODIFICATION "ASAN_OPTIONS=string_append::detect_leaks=0")
  endif()
  if(NOT ARG_LABEL)
    set(ARG_LABEL unit)
  endif()
  add_executable(${name} ${ARG_SRCS})
  if(ARG_CPU_BACKEND OR ARG_EVERY_CPU_VARIANT)
    target_link_libraries(${name} PRIVATE ${ARG_DEPS} ember_cpu_test_main GTest::gmock)
    # a llama.cpp with its CPU backend linked in (EMBER_LLAMA_CPP_DIR) is found by dlsym in
    # the executable itself (engine/llama/cpu_symbols.h)
    set_target_properties(${name} PROPERTIES ENABLE_EXPORTS ON)
  else()
    target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  endif()
  ember_warnings(${name})
  if(ARG_EVERY_CPU_VARIANT AND EMBER_CPU_VARIANTS)
    foreach(variant IN LISTS EMBER_CPU_VARIANTS)
      gtest_discover_tests(${name} TEST_SUFFIX ".${variant}" TEST_LIST ${name}_${variant}_tests
        PROPERTIES LABELS ${ARG_LABEL} ENVIRONMENT "EMBER_CPU_VARIANT=${variant}"
                   SKIP_RETURN_CODE 77 SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]" ${extra_props}
        DISCOVERY_TIMEOUT 30)
    endforeach()
  else()
    gtest_discover_tests(${name} PROPERTIES LABELS ${ARG_LABEL} DISCOVERY_TIMEOUT 30
                         ${extra_props})
  endif()
endfunction()

function(ember_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(EMBER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
