# Included by CMakeLists.txt for a CUDA LibTorch: can c10d's ProcessGroupNCCL.hpp be compiled here?
#
# nccl.h alone does not say so. The header pulls in ATen/cuda (cuda.h, cuda_runtime.h and its crt/ headers,
# cuda_fp16.h and CCCL's <nv/target>, cusparse.h, cublas, cusolver). A CUDA toolkit has all of them. `pip install
# torch` (2.15, CUDA 13) installs nccl.h (nvidia-nccl-cu13) and most CUDA headers into site-packages/nvidia/cu13/
# include, but not crt/ (nvidia-cuda-crt) or CCCL (nvidia-cuda-cccl): including the header there fails. So the
# header is compiled once, with the include folders and flags the addon itself would get, and the NCCL backend is
# built in only when that works. Otherwise the addon builds without it and the message says which header is
# missing and which wheel brings it.
#
# Sets LLAMAPRO_NCCL_USABLE (ON/OFF), LLAMAPRO_NCCL_INCLUDE (where nccl.h is) and LLAMAPRO_NCCL_INCLUDE_DIRS
# (what the addon must add: nccl.h's folder and the CUDA wheel's include folder).

set(LLAMAPRO_NCCL_USABLE OFF)
set(LLAMAPRO_NCCL_INCLUDE_DIRS "")
# pip layout: site-packages/torch/share/cmake/Torch beside site-packages/nvidia/nccl/include
find_path(LLAMAPRO_NCCL_INCLUDE nccl.h HINTS ENV NCCL_INCLUDE_DIR "${Torch_DIR}/../../../../nvidia/nccl/include" ${TORCH_INCLUDE_DIRS})
if(NOT LLAMAPRO_NCCL_INCLUDE)
  message(STATUS "llamapro: no nccl.h found (pip install nvidia-nccl-cu13, or set NCCL_INCLUDE_DIR); no NCCL backend")
  return()
endif()
list(APPEND LLAMAPRO_NCCL_INCLUDE_DIRS "${LLAMAPRO_NCCL_INCLUDE}")
# Without a toolkit the CUDA headers are the runtime wheel's (scripts/torch-prefix.cmake found its folder).
if(LLAMAPRO_CUDA_RUNTIME_ROOT AND EXISTS "${LLAMAPRO_CUDA_RUNTIME_ROOT}/include/cuda.h")
  list(APPEND LLAMAPRO_NCCL_INCLUDE_DIRS "${LLAMAPRO_CUDA_RUNTIME_ROOT}/include")
endif()

# The flags the addon gets from the torch target (its include folders, ABI flag, C++ standard) and the CUDA headers
# (a toolkit's, set up by Caffe2's cuda.cmake; or the wheel's). Spelled out: exporting the imported torch targets
# into try_compile's project fails (their link interface names targets only TorchConfig's scope knows).
set(_llamapro_probe_includes ${LLAMAPRO_NCCL_INCLUDE_DIRS} ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS} ${CUDA_INCLUDE_DIRS})
foreach(_target torch torch::cudart caffe2::cudart)
  if(TARGET ${_target})
    get_target_property(_value ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_value)
      list(APPEND _llamapro_probe_includes ${_value})
    endif()
  endif()
endforeach()
list(REMOVE_DUPLICATES _llamapro_probe_includes)
get_target_property(_llamapro_probe_options torch INTERFACE_COMPILE_OPTIONS)
if(NOT _llamapro_probe_options)
  set(_llamapro_probe_options "")
endif()
get_target_property(_llamapro_probe_features torch INTERFACE_COMPILE_FEATURES)
set(_llamapro_probe_std 17)
if(_llamapro_probe_features MATCHES "cxx_std_20")
  set(_llamapro_probe_std 20)
endif()

set(_llamapro_probe_dir "${CMAKE_BINARY_DIR}/nccl-probe")
file(WRITE "${_llamapro_probe_dir}/probe.cc" "#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>\n")
set(_llamapro_saved_type "${CMAKE_TRY_COMPILE_TARGET_TYPE}")
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)  # compile only: linking is the addon's own link step
string(REPLACE ";" "\\;" _llamapro_probe_includes "${_llamapro_probe_includes}")
try_compile(_llamapro_nccl_compiles "${_llamapro_probe_dir}/build" SOURCES "${_llamapro_probe_dir}/probe.cc"
  CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${_llamapro_probe_includes}"
  COMPILE_DEFINITIONS -DUSE_C10D_NCCL ${_llamapro_probe_options}
  CXX_STANDARD ${_llamapro_probe_std}
  OUTPUT_VARIABLE _llamapro_probe_output)
set(CMAKE_TRY_COMPILE_TARGET_TYPE "${_llamapro_saved_type}")

if(_llamapro_nccl_compiles)
  set(LLAMAPRO_NCCL_USABLE ON)
  return()
endif()

# Name the first missing header and the wheel that ships it (the pip package names of CUDA 13; CUDA 12 adds -cu12).
string(REGEX MATCH "fatal error: ([^:\n]+): No such file" _llamapro_missing "${_llamapro_probe_output}")
set(_llamapro_header "${CMAKE_MATCH_1}")
set(_llamapro_wheel "")
if(_llamapro_header MATCHES "^crt/")
  set(_llamapro_wheel nvidia-cuda-crt)
  set(_llamapro_extra crt)
elseif(_llamapro_header MATCHES "^(nv/|cuda/|cub/|thrust/)")
  set(_llamapro_wheel nvidia-cuda-cccl)
  set(_llamapro_extra cccl)
elseif(_llamapro_header MATCHES "^cusparse")
  set(_llamapro_wheel nvidia-cusparse)
  set(_llamapro_extra cusparse)
elseif(_llamapro_header MATCHES "^cublas")
  set(_llamapro_wheel nvidia-cublas)
  set(_llamapro_extra cublas)
elseif(_llamapro_header MATCHES "^cusolver")
  set(_llamapro_wheel nvidia-cusolver)
  set(_llamapro_extra cusolver)
elseif(_llamapro_header MATCHES "^cuda")
  set(_llamapro_wheel nvidia-cuda-runtime)
  set(_llamapro_extra cudart)
endif()
if(_llamapro_header)
  set(_llamapro_why "${_llamapro_header} is missing")
else()
  string(REGEX MATCH "error: [^\n]*" _llamapro_why "${_llamapro_probe_output}")
endif()
set(_llamapro_advice "")
if(_llamapro_wheel)
  # The version that matches the torch wheel: the cuda-toolkit meta-package pip installed beside it.
  get_filename_component(_llamapro_site "${Torch_DIR}/../../../.." ABSOLUTE)
  file(GLOB _llamapro_toolkit LIST_DIRECTORIES true "${_llamapro_site}/cuda_toolkit-*.dist-info")
  if(_llamapro_toolkit)
    list(GET _llamapro_toolkit 0 _llamapro_toolkit)
    string(REGEX REPLACE ".*/cuda_toolkit-([^/]+)\\.dist-info$" "\\1" _llamapro_toolkit_version "${_llamapro_toolkit}")
    set(_llamapro_advice " To build it in, install the CUDA headers pip leaves out, matching your torch: "
      "pip install \"cuda-toolkit[crt,cccl]==${_llamapro_toolkit_version}\" (${_llamapro_wheel} is the wheel with ${_llamapro_header}), "
      "or set CUDA_HOME to a CUDA toolkit, then rebuild.")
  else()
    set(_llamapro_advice " To build it in, install ${_llamapro_wheel} (the version of your torch's CUDA) or set CUDA_HOME "
      "to a CUDA toolkit, then rebuild.")
  endif()
  string(CONCAT _llamapro_advice ${_llamapro_advice})
endif()
message(WARNING "llamapro: nccl.h is in ${LLAMAPRO_NCCL_INCLUDE}, but c10d's ProcessGroupNCCL.hpp does not compile "
  "here (${_llamapro_why}), so this build has no NCCL backend (multi-GPU training needs it; everything else works)."
  "${_llamapro_advice}")
