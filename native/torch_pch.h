// Precompiled header: the LibTorch and Node-API headers every source file uses.
#pragma once
#include <torch/torch.h>
#include <napi.h>
