// One decode step in one worker-thread hop: llama_decode of the batch a node-llama-cpp context
// binding holds, then the next token of each given sequence sampled with its node-llama-cpp
// sampler, on the same thread, as llama-server samples right after its decode.
//
// node-llama-cpp 3.21.1 decodes (`decodeBatch`) and samples (`sampleToken`, one per sequence) as
// separate asynchronous calls, each a hop to a libuv worker and back to the main thread; a step of
// four sequences is five hops. This does the work of those five calls, in their order, with the
// very functions node-llama-cpp's own workers call (the sampler's are looked up in node-llama-cpp's
// loaded addon), so the tokens are the same.
#include <dlfcn.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "AddonContext.h"
#include "AddonSampler.h"
#include "loaded-addon.h"

namespace {

struct StepApi {
  int32_t (*decode)(llama_context*, llama_batch) = nullptr;
  void (*synchronize)(llama_context*) = nullptr;
  float* (*logits)(llama_context*) = nullptr;
  // AddonSampler's member functions, called with the sampler as `this` (the Itanium C++ ABI).
  void (*rebuild)(AddonSampler*) = nullptr;
  void (*sample)(AddonSampler*, llama_context*, int32_t, llama_token_data_array&, bool) = nullptr;
  void (*accept)(AddonSampler*, llama_token) = nullptr;
};

// The functions, from the copies node-llama-cpp loaded: from the addon file that holds the context
// binding's class (found from the object's vtable) and the libllama it links.
const char* resolve(StepApi& api, const void* binding) {
  const char* reason = nullptr;
  void* addon = loadedAddonOf(binding, reason);
  if (!addon) return reason;
  api.decode = reinterpret_cast<decltype(api.decode)>(dlsym(addon, "llama_decode"));
  api.synchronize = reinterpret_cast<decltype(api.synchronize)>(dlsym(addon, "llama_synchronize"));
  api.logits = reinterpret_cast<decltype(api.logits)>(dlsym(addon, "llama_get_logits"));
  if (!api.decode || !api.synchronize || !api.logits) return "libllama lacks llama_decode";
  api.rebuild = reinterpret_cast<decltype(api.rebuild)>(dlsym(addon, "_ZN12AddonSampler20rebuildChainIfNeededEv"));
  api.sample = reinterpret_cast<decltype(api.sample)>(dlsym(addon, "_ZN12AddonSampler6sampleEP13llama_contextiR22llama_token_data_arrayb"));
  api.accept = reinterpret_cast<decltype(api.accept)>(dlsym(addon, "_ZN12AddonSampler11acceptTokenEi"));
  if (!api.rebuild || !api.sample || !api.accept) return "node-llama-cpp's addon lacks AddonSampler's functions";
  return nullptr;
}

StepApi& api() {
  static StepApi api;
  return api;
}
const char* unresolved(const void* binding) {
  static const char* reason = resolve(api(), binding);
  return reason;
}

class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, AddonContext* context, std::vector<AddonSampler*> samplers, std::vector<int32_t> indexes)
      : Napi::AsyncWorker(env, "InfernoDecodeStep"),
        context_(context),
        samplers_(std::move(samplers)),
        indexes_(std::move(indexes)),
        tokens_(samplers_.size(), -1),
        errors_(samplers_.size()),
        deferred_(Napi::Promise::Deferred::New(env)) {
    context_->Ref();
    for (AddonSampler* sampler : samplers_) sampler->Ref();
  }
  ~StepWorker() override {
    context_->Unref();
    for (AddonSampler* sampler : samplers_) sampler->Unref();
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    const StepApi& api = ::api();
    const auto started = std::chrono::steady_clock::now();
    try {
      // As node-llama-cpp's decode worker, and with its messages.
      const int32_t result = api.decode(context_->ctx, context_->batch);
      if (result != 0) {
        SetError(result == 1 ? "could not find a KV slot for the batch (try reducing the size of the batch or increase the context)" : "Eval has failed");
        return;
      }
      api.synchronize(context_->ctx);
    } catch (const std::exception& error) {
      SetError(error.what());
      return;
    } catch (...) {
      SetError("Unknown error when calling \"llama_decode\"");
      return;
    }
    decodeMs_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (samplers_.empty()) return;
    if (api.logits(context_->ctx) == nullptr) {
      for (std::string& error : errors_) error = "This model does not support token generation";
      return;
    }
    // As node-llama-cpp's sample worker (no probabilities asked), one sequence after another; a
    // failure is that sequence's alone.
    for (size_t i = 0; i < samplers_.size(); i++) {
      AddonSampler* sampler = samplers_[i];
      if (sampler->disposed) {
        errors_[i] = "Sampler is disposed";
        continue;
      }
      llama_token token;
      try {
        api.rebuild(sampler);
        llama_token_data_array candidates{};
        api.sample(sampler, context_->ctx, indexes_[i], candidates, false);
        if (candidates.size == 0 || candidates.selected < 0 || candidates.selected >= static_cast<int64_t>(candidates.size)) continue;
        token = candidates.data[candidates.selected].id;
      } catch (const std::exception& error) {
        errors_[i] = error.what();
        continue;
      } catch (...) {
        errors_[i] = "Unknown error when calling \"SampleToken\"";
        continue;
      }
      try {
        api.accept(sampler, token);
        tokens_[i] = token;
      } catch (const std::exception& error) {
        errors_[i] = std::string("Failed to accept token in sampler: ") + error.what();
      } catch (...) {
        errors_[i] = "Unknown error when calling \"acceptToken\"";
      }
    }
  }

  // { tokens: Int32Array (-1: no token), decodeMs, errors?: (string | undefined)[] }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    Napi::Int32Array tokens = Napi::Int32Array::New(env, tokens_.size());
    for (size_t i = 0; i < tokens_.size(); i++) tokens[i] = tokens_[i];
    result.Set("tokens", tokens);
    result.Set("decodeMs", Napi::Number::New(env, decodeMs_));
    bool failed = false;
    for (const std::string& error : errors_) failed = failed || !error.empty();
    if (failed) {
      Napi::Array errors = Napi::Array::New(env, errors_.size());
      for (size_t i = 0; i < errors_.size(); i++) errors.Set(i, errors_[i].empty() ? env.Undefined() : Napi::String::New(env, errors_[i]));
      result.Set("errors", errors);
    }
    deferred_.Resolve(result);
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  AddonContext* context_;
  std::vector<AddonSampler*> samplers_;
  std::vector<int32_t> indexes_;
  std::vector<int32_t> tokens_;
  std::vector<std::string> errors_;
  double decodeMs_ = 0;
  Napi::Promise::Deferred deferred_;
};

template <typename T>
T* unwrapped(Napi::Env env, Napi::Value value) {
  void* wrapped = nullptr;
  if (!value.IsObject() || napi_unwrap(env, value, &wrapped) != napi_ok) return nullptr;
  return static_cast<T*>(wrapped);
}

}  // namespace

namespace {

// step(contextBinding, samplers, logitIndexes) -> Promise<{ tokens, decodeMs, errors? }>: decodes
// the batch the binding holds (initBatch/addToBatch as for decodeBatch), then samples
// samplers[i] at batch logit index logitIndexes[i]. The caller checks that the objects are
// node-llama-cpp's AddonContext and AddonSampler (instanceof) and keeps both alive and undisposed
// until the promise settles, as around decodeBatch and sampleToken.
Napi::Value Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Napi::TypeError::New(env, "step(contextBinding, samplers, logitIndexes: Int32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* context = unwrapped<AddonContext>(env, info[0]);
  if (!context) {
    Napi::TypeError::New(env, "not a node-llama-cpp context binding").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (const char* reason = unresolved(context)) {
    Napi::Error::New(env, reason).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (context->disposed || !context->contextLoaded || !context->ctx || !context->has_batch) {
    Napi::Error::New(env, context->disposed ? "Context is disposed" : "no batch to decode").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[1].As<Napi::Array>();
  Napi::Int32Array indexes = info[2].As<Napi::Int32Array>();
  if (indexes.ElementLength() != list.Length()) {
    Napi::RangeError::New(env, "one logit index per sampler").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<AddonSampler*> samplers;
  std::vector<int32_t> at;
  for (uint32_t i = 0; i < list.Length(); i++) {
    auto* sampler = unwrapped<AddonSampler>(env, list.Get(i));
    const int32_t index = indexes[i];
    // A disposed sampler fails its own sequence only (as node-llama-cpp's sampleToken would).
    if (!sampler || index < 0 || index >= context->batch.n_tokens) {
      Napi::Error::New(env, "not a sampler, or a logit index outside the batch").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    samplers.push_back(sampler);
    at.push_back(index);
  }
  auto* worker = new StepWorker(env, context, std::move(samplers), std::move(at));
  worker->Queue();
  return worker->Promise();
}

}  // namespace

namespace {
// ready(contextBinding) -> undefined, or why the step cannot run on node-llama-cpp as loaded.
Napi::Value Ready(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* context = info.Length() > 0 ? unwrapped<AddonContext>(env, info[0]) : nullptr;
  if (!context) return Napi::String::New(env, "not a node-llama-cpp context binding");
  const char* reason = unresolved(context);
  return reason ? Napi::String::New(env, reason) : env.Undefined();
}
}  // namespace

void InitStep(Napi::Env env, Napi::Object exports) {
  exports.Set("step", Napi::Function::New(env, Step));
  exports.Set("stepUnavailable", Napi::Function::New(env, Ready));
}
