// One source tree for LibTorch 1.13 (Debian, CI) and 2.x (the GPU machine): version differences live here.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#define LLAMAPRO_HAVE_SDPA 1
#else
#define LLAMAPRO_HAVE_SDPA 0
#endif
