# Third-party dependencies. Each is linked PRIVATE by exactly one component (CONVENTIONS.md).
find_package(Threads REQUIRED)
find_package(GTest REQUIRED)
include(GoogleTest)
find_package(benchmark QUIET)
if(CMAKE_CROSSCOMPILING)
  # Header-only packages of the build machine, linked into EMBER_AARCH64_DEPS/include by
  # scripts/cross_aarch64.sh (their CMake files point at the build machine's /usr/include,
  # which must not be on a cross compiler's include path).
  find_path(EMBER_NLOHMANN_INCLUDE_DIR nlohmann/json.hpp REQUIRED)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json::nlohmann_json INTERFACE ${EMBER_NLOHMANN_INCLUDE_DIR})
  set(Boost_NO_BOOST_CMAKE ON)
else()
  find_package(nlohmann_json 3.10 REQUIRED)
  find_package(CLI11 QUIET)
endif()
if(NOT CLI11_FOUND)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
endif()
find_package(Boost 1.74 REQUIRED)
find_package(SQLite3 3.31 REQUIRED)  # ledger/ only (its store.cc)
if(CMAKE_CROSSCOMPILING)  # the static libsqlite3.a of scripts/cross_aarch64.sh needs these
  set_property(TARGET SQLite::SQLite3 APPEND PROPERTY INTERFACE_LINK_LIBRARIES m dl Threads::Threads)
endif()

# llama.cpp: a user's checkout, or the pinned build that scripts/llama_cpp.sh caches.
if(EMBER_LLAMA_CPP_DIR)
  set(LLAMA_BUILD_TESTS OFF CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_TOOLS OFF CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_SERVER OFF CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_COMMON OFF CACHE BOOL "" FORCE)
  set(LLAMA_OPENSSL OFF CACHE BOOL "" FORCE)
  set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
  add_subdirectory(${EMBER_LLAMA_CPP_DIR} ${CMAKE_BINARY_DIR}/llama.cpp EXCLUDE_FROM_ALL SYSTEM)
  add_library(ember_llama_dep INTERFACE)
  target_link_libraries(ember_llama_dep INTERFACE llama ggml)
  if(NOT EMBER_LLAMA_SOURCE)
    set(EMBER_LLAMA_SOURCE ${EMBER_LLAMA_CPP_DIR})
  endif()
else()
  if(NOT EMBER_LLAMA_PREFIX)
    message(FATAL_ERROR "Set EMBER_LLAMA_PREFIX (run scripts/llama_cpp.sh prefix) or EMBER_LLAMA_CPP_DIR")
  endif()
  list(PREPEND CMAKE_PREFIX_PATH ${EMBER_LLAMA_PREFIX})
  if(CMAKE_CROSSCOMPILING)  # a cross toolchain searches only its roots (cmake/aarch64-linux-gnu.cmake)
    list(APPEND CMAKE_FIND_ROOT_PATH ${EMBER_LLAMA_PREFIX})
  endif()
  if(NOT EMBER_LLAMA_SOURCE)
    message(WARNING "EMBER_LLAMA_SOURCE is not set: `ember model synth` has no default vocabulary "
                    "(scripts/setup.sh sets it from scripts/llama_cpp.sh source)")
  endif()
  # Forget the package dirs of an earlier configure: a new prefix (another patch set or
  # flags) must not compile against the old prefix's headers.
  unset(ggml_DIR CACHE)
  unset(llama_DIR CACHE)
  # llama-config.cmake finds its library with find_library(llama_LIBRARY), which CMake caches:
  # without this, a reconfigure against a new prefix compiled against the new headers but
  # linked the old libllama.a.
  unset(llama_LIBRARY CACHE)
  unset(GGML_LIBRARY CACHE)
  unset(GGML_BASE_LIBRARY CACHE)
  unset(GGML_CPU_LIBRARY CACHE)
  find_package(ggml REQUIRED CONFIG PATHS ${EMBER_LLAMA_PREFIX} NO_DEFAULT_PATH)
  find_package(llama REQUIRED CONFIG PATHS ${EMBER_LLAMA_PREFIX} NO_DEFAULT_PATH)
  add_library(ember_llama_dep INTERFACE)
  target_link_libraries(ember_llama_dep INTERFACE llama ggml::ggml ggml::ggml-base)
endif()

# ember's carried patches (third_party/llama.cpp-patches) add features a user's own checkout may
# lack: the repack cache (0003), mapping without prefetch (0005). Deterministic mode (0002) is
# looked up in the loaded CPU backend at run time and refused at start-up without it.
if(EMBER_LLAMA_CPP_DIR)
  set(_ember_ggml_cpu_h ${EMBER_LLAMA_CPP_DIR}/ggml/include/ggml-cpu.h)
  set(_ember_llama_h ${EMBER_LLAMA_CPP_DIR}/include/llama.h)
  set(EMBER_LLAMA_BUILD_ID "checkout")
else()
  set(_ember_ggml_cpu_h ${EMBER_LLAMA_PREFIX}/include/ggml-cpu.h)
  set(_ember_llama_h ${EMBER_LLAMA_PREFIX}/include/llama.h)
  get_filename_component(EMBER_LLAMA_BUILD_ID ${EMBER_LLAMA_PREFIX} NAME)
endif()
# ember_llama_feature(HEADER SYMBOL DEFINE WARNING): defines DEFINE for ember's llama code when
# HEADER declares SYMBOL (one of ember's carried patches is applied), else warns what is lost.
function(ember_llama_feature header symbol define warning)
  file(READ ${header} text)
  string(FIND "${text}" "${symbol}" pos)
  if(pos GREATER -1)
    target_compile_definitions(ember_llama_dep INTERFACE ${define}=1)
  else()
    message(WARNING "this llama.cpp lacks ${warning} (see third_party/llama.cpp-patches)")
  endif()
endfunction()
ember_llama_feature(${_ember_ggml_cpu_h} ggml_cpu_repack_set_allocator EMBER_HAVE_REPACK_ALLOCATOR
  "ember's repack-allocator patch: repacked weights are converted on every load, never cached")
ember_llama_feature(${_ember_llama_h} no_prefetch EMBER_HAVE_NO_PREFETCH
  "ember's no-prefetch patch: a cached model still maps its whole file resident")
target_compile_definitions(ember_llama_dep INTERFACE EMBER_LLAMA_BUILD_ID="${EMBER_LLAMA_BUILD_ID}")

# What scripts/llama_cpp.sh built (its ember-build.txt): the llama.cpp commit, ember's patches
# and the CPU variants, reported by `ember --version` and /metrics; the variants' directory is
# where the build tree finds them (an install carries its own copy in lib/ember).
set(EMBER_CPU_VARIANTS "")
if(NOT EMBER_LLAMA_CPP_DIR AND EXISTS ${EMBER_LLAMA_PREFIX}/ember-build.txt)
  file(STRINGS ${EMBER_LLAMA_PREFIX}/ember-build.txt _ember_build_lines)
  foreach(_line IN LISTS _ember_build_lines)
    if(_line MATCHES "^([a-z_]+)=(.*)$")
      set(_ember_build_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  string(REPLACE "," ";" EMBER_CPU_VARIANTS "${_ember_build_variants}")
  set(EMBER_CPU_VARIANT_DIR "${_ember_build_variant_dir}")
  target_compile_definitions(ember_llama_dep INTERFACE
    EMBER_LLAMA_COMMIT="${_ember_build_commit}"
    EMBER_LLAMA_PATCHES="${_ember_build_patches}"
    EMBER_CPU_VARIANTS_BUILT="${_ember_build_variants}"
    EMBER_CPU_VARIANT_DIR="${EMBER_CPU_VARIANT_DIR}")
  message(STATUS "llama.cpp ${_ember_build_commit}: CPU variants ${_ember_build_variants}")
elseif(NOT EMBER_LLAMA_CPP_DIR)
  message(FATAL_ERROR "${EMBER_LLAMA_PREFIX} has no ember-build.txt: build it with "
                      "scripts/llama_cpp.sh prefix")
endif()

# ember_cached_archive(TARGET PREFIX SCRIPT ARCHIVE INCLUDE): an imported static archive that a
# project script built into a cache directory (PREFIX, finished when it holds .ember-complete),
# with its headers as SYSTEM includes (not held to ember's -Werror).
function(ember_cached_archive target prefix script archive include)
  if(NOT EXISTS ${prefix}/.ember-complete)
    message(FATAL_ERROR "${prefix} is not a finished build of ${script}")
  endif()
  add_library(${target} STATIC IMPORTED)
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION ${prefix}/${archive})
  target_include_directories(${target} SYSTEM INTERFACE ${prefix}/${include})
endfunction()

# llama.cpp's common chat library (chat templates through its Jinja engine, tool-call parsing,
# JSON schema -> GBNF), the static archive scripts/llama_cpp.sh common caches. Private to
# src/chat/ (tools/check_layers.py); it carries its own nlohmann json 3.12 inside the archive,
# in that version's ABI namespace, apart from the system 3.11 that api/ uses. Required: the server
# renders chat, tools and structured output through src/chat.
set(EMBER_LLAMA_COMMON_PREFIX "" CACHE PATH
    "Install prefix of llama.cpp's common chat library (scripts/llama_cpp.sh common)")
if(EMBER_LLAMA_COMMON_PREFIX)
  ember_cached_archive(ember_llama_common_dep "${EMBER_LLAMA_COMMON_PREFIX}"
    "scripts/llama_cpp.sh common" lib/libllama-common-chat.a include/llama-common)
  target_link_libraries(ember_llama_common_dep INTERFACE ember_llama_dep Threads::Threads)
else()
  message(FATAL_ERROR "EMBER_LLAMA_COMMON_PREFIX is not set: chat/ (chat templates through "
                      "Jinja, tool calls, JSON schema) needs llama.cpp's common chat library; "
                      "scripts/setup.sh sets it from scripts/llama_cpp.sh common")
endif()

# llguidance (scripts/llguidance.sh prefix): the JSON-schema engine of constrained decoding,
# a Rust static archive with a C API. Private to the libllama engine's adapter
# (src/engine/llama/llguidance_sampler.cc; tools/check_layers.py). Optional: where Rust cannot
# build for the target (the aarch64 cross build here), JSON schemas run as GBNF grammars.
set(EMBER_LLGUIDANCE_PREFIX "" CACHE PATH
    "Install prefix of llguidance's C API (scripts/llguidance.sh prefix); empty = GBNF only")
if(EMBER_LLGUIDANCE_PREFIX)
  ember_cached_archive(ember_llguidance_dep "${EMBER_LLGUIDANCE_PREFIX}"
    "scripts/llguidance.sh prefix" lib/libllguidance.a include)
  # What Rust's standard library needs from libc.
  target_link_libraries(ember_llguidance_dep INTERFACE Threads::Threads ${CMAKE_DL_LIBS} m)
  message(STATUS "llguidance: ${EMBER_LLGUIDANCE_PREFIX}")
else()
  message(STATUS "llguidance: not built in (JSON schemas are enforced as GBNF grammars)")
endif()

# Wasmtime's C API (scripts/wasmtime.sh prefix): the WebAssembly runtime of proxy-wasm plugins,
# a Rust static archive. Private to src/plugins/ (tools/check_layers.py). Optional: without it
# (no cargo; the aarch64 cross build) ember builds without plugins (docs/plugins.md).
set(EMBER_WASMTIME_PREFIX "" CACHE PATH
    "Install prefix of Wasmtime's C API (scripts/wasmtime.sh prefix); empty = no plugins")
if(EMBER_WASMTIME_PREFIX)
  ember_cached_archive(ember_wasmtime_dep "${EMBER_WASMTIME_PREFIX}"
    "scripts/wasmtime.sh prefix" lib/libwasmtime.a include)
  # What Rust's standard library needs from libc.
  target_link_libraries(ember_wasmtime_dep INTERFACE Threads::Threads ${CMAKE_DL_LIBS} m)
  message(STATUS "wasmtime: ${EMBER_WASMTIME_PREFIX}")
else()
  message(STATUS "wasmtime: not built in (no WebAssembly plugins)")
endif()
