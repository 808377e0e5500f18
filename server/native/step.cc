// One decode step in one worker-thread hop: llama_decode of the batch a node-llama-cpp context
// binding holds, then the next token of each given sequence sampled with its node-llama-cpp
// sampler, on the same thread, as llama-server samples right after its decode. And a run of such
// steps for a context's generations when nothing else waits on it, one step after another on a
// thread of its own, each step's tokens handed to the main thread as they come (`run`, below).
//
// node-llama-cpp 3.21.1 decodes (`decodeBatch`) and samples (`sampleToken`, one per sequence) as
// separate asynchronous calls, each a hop to a libuv worker and back to the main thread; a step of
// four sequences is five hops. This does the work of those five calls, in their order, with the
// very functions node-llama-cpp's own workers call (the sampler's are looked up in node-llama-cpp's
// loaded addon), so the tokens are the same.
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
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
  const llama_model* (*model)(const llama_context*) = nullptr;
  const llama_vocab* (*vocab)(const llama_model*) = nullptr;
  bool (*eog)(const llama_vocab*, llama_token) = nullptr;
  int32_t (*threads)(llama_context*) = nullptr;
  llama_memory_t (*memory)(const llama_context*) = nullptr;
  bool (*removeCells)(llama_memory_t, llama_seq_id, llama_pos, llama_pos) = nullptr;
  float* (*logitsAt)(llama_context*, int32_t) = nullptr;
  int32_t (*vocabSize)(const llama_vocab*) = nullptr;
  bool (*recurrent)(const llama_model*) = nullptr;
  bool (*hybrid)(const llama_model*) = nullptr;
  uint32_t (*sequenceCount)(const llama_context*) = nullptr;
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
  api.model = reinterpret_cast<decltype(api.model)>(dlsym(addon, "llama_get_model"));
  api.vocab = reinterpret_cast<decltype(api.vocab)>(dlsym(addon, "llama_model_get_vocab"));
  api.eog = reinterpret_cast<decltype(api.eog)>(dlsym(addon, "llama_vocab_is_eog"));
  api.threads = reinterpret_cast<decltype(api.threads)>(dlsym(addon, "llama_n_threads"));
  api.memory = reinterpret_cast<decltype(api.memory)>(dlsym(addon, "llama_get_memory"));
  api.removeCells = reinterpret_cast<decltype(api.removeCells)>(dlsym(addon, "llama_memory_seq_rm"));
  api.logitsAt = reinterpret_cast<decltype(api.logitsAt)>(dlsym(addon, "llama_get_logits_ith"));
  api.vocabSize = reinterpret_cast<decltype(api.vocabSize)>(dlsym(addon, "llama_vocab_n_tokens"));
  api.recurrent = reinterpret_cast<decltype(api.recurrent)>(dlsym(addon, "llama_model_is_recurrent"));
  api.hybrid = reinterpret_cast<decltype(api.hybrid)>(dlsym(addon, "llama_model_is_hybrid"));
  api.sequenceCount = reinterpret_cast<decltype(api.sequenceCount)>(dlsym(addon, "llama_n_seq_max"));
  if (!api.decode || !api.synchronize || !api.logits || !api.model || !api.vocab || !api.eog || !api.threads || !api.memory || !api.removeCells || !api.logitsAt ||
      !api.vocabSize || !api.recurrent || !api.hybrid || !api.sequenceCount)
    return "libllama lacks a function the step uses";
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

// The batch the binding holds, decoded as node-llama-cpp's decode worker decodes it (with its
// messages); false with `error` set when it failed.
bool decodeBatch(AddonContext* context, std::string& error) {
  const StepApi& api = ::api();
  try {
    const int32_t result = api.decode(context->ctx, context->batch);
    if (result != 0) {
      error = result == 1 ? "could not find a KV slot for the batch (try reducing the size of the batch or increase the context)" : "Eval has failed";
      return false;
    }
    api.synchronize(context->ctx);
  } catch (const std::exception& thrown) {
    error = thrown.what();
    return false;
  } catch (...) {
    error = "Unknown error when calling \"llama_decode\"";
    return false;
  }
  return true;
}

// The token `sampler` samples at batch logit index `index`, as node-llama-cpp's sample worker
// samples it (no probabilities asked), and accepted; -1 with `error` set, or -1 alone when there
// was nothing to sample.
llama_token sampleAt(AddonSampler* sampler, AddonContext* context, int32_t index, std::string& error) {
  const StepApi& api = ::api();
  if (sampler->disposed) {
    error = "Sampler is disposed";
    return -1;
  }
  llama_token token;
  try {
    api.rebuild(sampler);
    llama_token_data_array candidates{};
    api.sample(sampler, context->ctx, index, candidates, false);
    if (candidates.size == 0 || candidates.selected < 0 || candidates.selected >= static_cast<int64_t>(candidates.size)) return -1;
    token = candidates.data[candidates.selected].id;
  } catch (const std::exception& thrown) {
    error = thrown.what();
    return -1;
  } catch (...) {
    error = "Unknown error when calling \"SampleToken\"";
    return -1;
  }
  try {
    api.accept(sampler, token);
  } catch (const std::exception& thrown) {
    error = std::string("Failed to accept token in sampler: ") + thrown.what();
    return -1;
  } catch (...) {
    error = "Unknown error when calling \"acceptToken\"";
    return -1;
  }
  return token;
}

// `result.errors`: each sequence's error (undefined where it had none), set only when one had one.
void setErrors(Napi::Env env, Napi::Object result, const std::vector<std::string>& errors) {
  if (std::all_of(errors.begin(), errors.end(), [](const std::string& error) { return error.empty(); })) return;
  Napi::Array list = Napi::Array::New(env, errors.size());
  for (size_t i = 0; i < errors.size(); i++) list.Set(i, errors[i].empty() ? env.Undefined() : Napi::String::New(env, errors[i]));
  result.Set("errors", list);
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
    const auto started = std::chrono::steady_clock::now();
    std::string error;
    if (!decodeBatch(context_, error)) {
      SetError(error);
      return;
    }
    decodeMs_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (samplers_.empty()) return;
    if (::api().logits(context_->ctx) == nullptr) {
      for (std::string& error : errors_) error = "This model does not support token generation";
      return;
    }
    // One sequence after another; a failure is that sequence's alone.
    for (size_t i = 0; i < samplers_.size(); i++) tokens_[i] = sampleAt(samplers_[i], context_, indexes_[i], errors_[i]);
  }

  // { tokens: Int32Array (-1: no token), decodeMs, errors?: (string | undefined)[] }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    Napi::Int32Array tokens = Napi::Int32Array::New(env, tokens_.size());
    for (size_t i = 0; i < tokens_.size(); i++) tokens[i] = tokens_[i];
    result.Set("tokens", tokens);
    result.Set("decodeMs", Napi::Number::New(env, decodeMs_));
    setErrors(env, result, errors_);
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

// A run of steps for a context's generations of ours when nothing else waits on it: decode each
// sequence's `token` at its `position` in one batch, sample each one's next with its sampler, and
// again from those, on a thread of its own, without waiting for the main thread, which is handed
// each step's tokens as they come (`onTokens`, several steps at once when it was busy). The
// sequences step together, and the run ends as soon as one of them ends: after `limit` tokens, on
// an end-of-generation token, a token not sampled or an error, when a sequence reaches `cells`,
// after `budgetMs` of decoding, or at the next step once the main thread sets `control[0]` (a stop
// sequence, an abort, a client gone, new work for the context): the tokens decoded past that are
// left in the sequences' cells, which the caller removes as it ends each generation.
//
// Its own thread, not one of libuv's: a run holds its thread for up to `budgetMs`, and as libuv
// work four runs would hold all four of libuv's workers, with every other context's steps,
// password hashing and file system work waiting behind them.
constexpr int RUN_NICENESS = 5;
// The runs decoding now, in this process.
std::atomic<int>& activeRuns() {
  static std::atomic<int> count{0};
  return count;
}

// A row of a sequence that is not stepping, decoded beside the ones that are so that each of their
// rows is in a micro-batch of several sequences (see the loop's #padsFor): at `position`, the
// sequence's next, its cell removed again after the decode.
struct Pad {
  int32_t sequence, position;
};

struct DecodeRun {
  AddonContext* context;
  std::vector<Pad> pads;  // ascending sequence ids
  bool padLogits = false;  // the pads' rows ask for logits too (the loop's #loneDiffers)
  // One per sequence, in the batch's order (ascending sequence ids: see the loop's #fill).
  std::vector<AddonSampler*> samplers;
  std::vector<int32_t> sequences, positions;
  std::vector<llama_token> tokens;
  int32_t limit, cells;
  double budgetMs;
  int32_t* stop;
  Napi::Reference<Napi::Int32Array> control;
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  std::mutex mutex;
  std::vector<int32_t> ready;  // sampled, not yet handed on: one token per sequence per step
  int32_t decoded = 0;
  double decodeMs = 0;
  std::string error;                // the run's (a decode's): every sequence's
  std::vector<std::string> errors;  // a sequence's own (its sampler's)
  std::thread thread;

  explicit DecodeRun(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}

  void Decode() {
    const StepApi& api = ::api();
    // Beside other runs, a little below the process's other threads (Linux sets a nice value per
    // thread), so that the main thread and libuv's work come first where they contend for the
    // cores: beside four runs of the tiny model on 2 cores a login (argon2 on libuv) took 58-64 ms
    // at nice 5 against 103-110 at 0 (55-57 before runs), for 5% of the runs' tokens/s. A run
    // alone keeps its priority: niced, one tiny stream made 4,017 tokens/s against 4,512 (medians
    // of 15 alternating). Not a decode on several threads: its other threads (ggml's, at the
    // process's priority) would wait at every operation's barrier for this one when it is put behind.
    const int others = activeRuns().fetch_add(1);
    if (api.threads(context->ctx) == 1 && others > 0) setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), getpriority(PRIO_PROCESS, 0) + RUN_NICENESS);
    const llama_vocab* vocab = api.vocab(api.model(context->ctx));
    llama_batch& batch = context->batch;
    const int32_t n = static_cast<int32_t>(samplers.size());
    int32_t furthest = 0;
    for (int32_t position : positions) furthest = std::max(furthest, position);
    std::vector<llama_token> next = tokens;
    // The batch's rows: the sequences and the pads in ascending id order, all but the sequences'
    // tokens and positions the same every step (the pads' rows wholly).
    const int32_t width = n + static_cast<int32_t>(pads.size());
    std::vector<int32_t> rows(n);  // each sequence's row
    for (int32_t i = 0, pad = 0, row = 0; row < width; row++) {
      const bool padRow = pad < static_cast<int32_t>(pads.size()) && (i == n || pads[pad].sequence < sequences[i]);
      batch.token[row] = tokens[0];  // (a pad's: any token does)
      batch.pos[row] = padRow ? pads[pad].position : 0;
      batch.n_seq_id[row] = 1;
      batch.seq_id[row][0] = padRow ? pads[pad].sequence : sequences[i];
      batch.logits[row] = !padRow || padLogits;
      if (padRow) pad++;
      else rows[i++] = row;
    }
    llama_memory_t memory = api.memory(context->ctx);
    for (; decoded < limit && furthest + decoded < cells && decodeMs < budgetMs;) {
      if (__atomic_load_n(stop, __ATOMIC_ACQUIRE) != 0) break;
      batch.n_tokens = width;
      for (int32_t i = 0; i < n; i++) {
        batch.token[rows[i]] = next[i];
        batch.pos[rows[i]] = positions[i] + decoded;
      }
      const auto started = std::chrono::steady_clock::now();
      std::string failed;
      bool ok = decodeBatch(context, failed);
      for (const Pad& pad : pads) {
        if (!api.removeCells(memory, pad.sequence, pad.position, -1) && ok) {
          ok = false;
          failed = "a pad's cell could not be removed from its sequence";
        }
      }
      if (!ok) {
        Fail(failed);
        break;
      }
      decodeMs += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      decoded++;
      if (api.logits(context->ctx) == nullptr) {
        Fail("This model does not support token generation");
        break;
      }
      bool ended = false;
      for (int32_t i = 0; i < n; i++) {
        next[i] = sampleAt(samplers[i], context, rows[i], errors[i]);
        ended = ended || next[i] < 0 || api.eog(vocab, next[i]);
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        ready.insert(ready.end(), next.begin(), next.end());
      }
      // Not queued: the environment is closing (its finalizer joins this thread).
      if (tsfn.NonBlockingCall([this](Napi::Env, Napi::Function onTokens) { Deliver(onTokens); }) != napi_ok) break;
      if (ended) break;
    }
    activeRuns().fetch_sub(1);
    // The last thing this thread does with the run: the finalizer (main thread) settles and frees it.
    tsfn.Release();
  }

  // The first error is the run's (the thread's and the callback's share it).
  void Fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex);
    if (error.empty()) error = message;
  }

  // On the main thread: the tokens sampled since the last delivery, in one call (the callback must
  // not throw).
  void Deliver(Napi::Function onTokens) {
    std::vector<int32_t> sampled;
    {
      std::lock_guard<std::mutex> lock(mutex);
      sampled.swap(ready);
    }
    if (sampled.empty()) return;
    Napi::Env env = onTokens.Env();
    Napi::HandleScope scope(env);
    Napi::Int32Array array = Napi::Int32Array::New(env, sampled.size());
    std::copy(sampled.begin(), sampled.end(), array.Data());
    try {
      onTokens.Call({array});
    } catch (const Napi::Error& thrown) {
      // (Not thrown on: an exception out of a thread-safe function's call ends the process.)
      __atomic_store_n(stop, 1, __ATOMIC_RELEASE);
      Fail(std::string("the run's callback threw: ") + thrown.Message());
    }
  }

  // On the main thread, once the thread released the function and every delivery is done:
  // { decoded: the steps decoded (each sampled every sequence's next), decodeMs, error?, errors? }.
  static void Finish(Napi::Env env, DecodeRun* run) {
    // At once where the thread released the function (its last use of the run); where the
    // environment closes first, once the thread has stopped (at its next step: every call fails).
    if (run->thread.joinable()) run->thread.join();
    Napi::HandleScope scope(env);
    Napi::Object result = Napi::Object::New(env);
    result.Set("decoded", Napi::Number::New(env, run->decoded));
    result.Set("decodeMs", Napi::Number::New(env, run->decodeMs));
    if (!run->error.empty()) result.Set("error", Napi::String::New(env, run->error));
    setErrors(env, result, run->errors);
    run->deferred.Resolve(result);
    run->context->Unref();
    for (AddonSampler* sampler : run->samplers) sampler->Unref();
    delete run;
  }
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
// run(contextBinding, samplers, sequenceIds: Int32Array, positions: Int32Array, tokens:
// Int32Array, limit, cells, budgetMs, control: Int32Array, onTokens, padIds?: Int32Array,
// padPositions?: Int32Array, padLogits?: boolean) ->
// Promise<{ decoded, decodeMs, error?, errors? }>: DecodeRun above, for the sequences
// `sequenceIds` (ascending), each decoding its `tokens[i]` at `positions[i]` first and sampled
// with `samplers[i]`, beside a row of each sequence of `padIds` (ascending, none of them stepping)
// at its `padPositions[i]` (asking for logits with `padLogits`, which nothing reads: a micro-batch
// then has as many output rows as rows), its cell removed after each decode. The binding must hold a batch of room for one token per sequence and pad; the caller keeps the binding and the
// samplers alive and undisposed until the promise settles, and gives the context to nothing else
// meanwhile.
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto int32s = [&](size_t i) { return info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array; };
  if (info.Length() < 10 || !info[1].IsArray() || !int32s(2) || !int32s(3) || !int32s(4) || !info[5].IsNumber() || !info[6].IsNumber() || !info[7].IsNumber() || !int32s(8) ||
      info[8].As<Napi::TypedArray>().ElementLength() < 1 || !info[9].IsFunction()) {
    Napi::TypeError::New(env, "run(contextBinding, samplers, sequenceIds: Int32Array, positions: Int32Array, tokens: Int32Array, limit, cells, budgetMs, control: Int32Array, onTokens)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* context = unwrapped<AddonContext>(env, info[0]);
  Napi::Array list = info[1].As<Napi::Array>();
  Napi::Int32Array sequences = info[2].As<Napi::Int32Array>(), positions = info[3].As<Napi::Int32Array>(), tokens = info[4].As<Napi::Int32Array>();
  std::vector<AddonSampler*> samplers;
  for (uint32_t i = 0; i < list.Length(); i++) samplers.push_back(unwrapped<AddonSampler>(env, list.Get(i)));
  if (!context || samplers.empty() || std::find(samplers.begin(), samplers.end(), nullptr) != samplers.end()) {
    Napi::TypeError::New(env, "not a node-llama-cpp context binding and samplers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (sequences.ElementLength() != samplers.size() || positions.ElementLength() != samplers.size() || tokens.ElementLength() != samplers.size()) {
    Napi::RangeError::New(env, "one sequence id, position and token per sampler").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (const char* reason = unresolved(context)) {
    Napi::Error::New(env, reason).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<Pad> pads;
  if (info.Length() > 10) {
    if (info.Length() < 12 || !int32s(10) || !int32s(11) || info[10].As<Napi::TypedArray>().ElementLength() != info[11].As<Napi::TypedArray>().ElementLength() ||
        (info.Length() > 12 && !info[12].IsUndefined() && !info[12].IsBoolean())) {
      Napi::TypeError::New(env, "padIds and padPositions: Int32Arrays of one length (and padLogits: a boolean)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Int32Array padIds = info[10].As<Napi::Int32Array>(), padPositions = info[11].As<Napi::Int32Array>();
    for (size_t i = 0; i < padIds.ElementLength(); i++) pads.push_back({padIds[i], padPositions[i]});
  }
  if (context->disposed || !context->contextLoaded || !context->ctx || !context->has_batch || context->batch_n_tokens < static_cast<int32_t>(samplers.size() + pads.size())) {
    Napi::Error::New(env, context->disposed ? "Context is disposed" : "no batch of room for the run's tokens").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Ascending ids, none a lane's, all of the context's sequences; positions from 0.
  for (size_t i = 0; i < pads.size(); i++) {
    const bool lane = std::find(sequences.Data(), sequences.Data() + sequences.ElementLength(), pads[i].sequence) != sequences.Data() + sequences.ElementLength();
    if (pads[i].sequence < 0 || pads[i].position < 0 || lane || (i > 0 && pads[i].sequence <= pads[i - 1].sequence) ||
        (pads[i].sequence >= static_cast<int32_t>(::api().sequenceCount(context->ctx)))) {
      Napi::RangeError::New(env, "pads: ascending ids of the context's other sequences, at positions from 0").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  auto* run = new DecodeRun(env);
  run->context = context;
  run->samplers = std::move(samplers);
  run->sequences.assign(sequences.Data(), sequences.Data() + sequences.ElementLength());
  run->positions.assign(positions.Data(), positions.Data() + positions.ElementLength());
  run->tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
  run->errors.resize(run->samplers.size());
  run->pads = std::move(pads);
  run->padLogits = info.Length() > 12 && info[12].IsBoolean() && info[12].As<Napi::Boolean>().Value();
  // Any count: a sink with no limit passes Infinity (which Int32Value would read as 0).
  const double limit = info[5].As<Napi::Number>().DoubleValue();
  run->limit = limit >= INT32_MAX ? INT32_MAX : static_cast<int32_t>(limit);
  run->cells = info[6].As<Napi::Number>().Int32Value();
  run->budgetMs = info[7].As<Napi::Number>().DoubleValue();
  Napi::Int32Array control = info[8].As<Napi::Int32Array>();
  run->stop = control.Data();
  run->control = Napi::Persistent(control);
  Napi::Promise promise = run->deferred.Promise();
  context->Ref();
  for (AddonSampler* sampler : run->samplers) sampler->Ref();
  run->tsfn = Napi::ThreadSafeFunction::New(env, info[9].As<Napi::Function>(), "InfernoDecodeRun", 0, 1, run, [](Napi::Env env, DecodeRun* finished) { DecodeRun::Finish(env, finished); });
  try {
    run->thread = std::thread(&DecodeRun::Decode, run);
  } catch (const std::system_error& error) {
    run->error = std::string("could not start the run's thread: ") + error.what();
    run->tsfn.Release();
  }
  return promise;
}
}  // namespace

namespace {
// A live context binding whose functions resolved, or undefined with the JavaScript error thrown.
AddonContext* liveContext(Napi::Env env, Napi::Value value) {
  auto* context = unwrapped<AddonContext>(env, value);
  const char* reason = context ? unresolved(context) : "not a node-llama-cpp context binding";
  if (!reason && (context->disposed || !context->contextLoaded || !context->ctx)) reason = "Context is disposed";
  if (reason) {
    Napi::Error::New(env, reason).ThrowAsJavaScriptException();
    return nullptr;
  }
  return context;
}

// logitsAt(contextBinding, batchIndex) -> Float32Array: a copy of the logits the last decode
// left for that row of its batch (llama_get_logits_ith). Between decodes only.
Napi::Value LogitsAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonContext* context = info.Length() > 1 && info[1].IsNumber() ? liveContext(env, info[0]) : nullptr;
  if (!context) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, "logitsAt(contextBinding, batchIndex)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int32_t index = info[1].As<Napi::Number>().Int32Value();
  const float* logits = nullptr;
  try {
    if (index >= 0 && index < context->batch.n_tokens) logits = ::api().logitsAt(context->ctx, index);
  } catch (...) {
    logits = nullptr;
  }
  if (!logits) {
    Napi::RangeError::New(env, "no logits at that index of the last batch").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int32_t size = ::api().vocabSize(::api().vocab(::api().model(context->ctx)));
  Napi::Float32Array copy = Napi::Float32Array::New(env, size);
  std::copy(logits, logits + size, copy.Data());
  return copy;
}

// plainCache(contextBinding) -> boolean: whether the context's memory is a plain KV cache, in
// which a sequence's last cells can be removed leaving it as it was before them (not a recurrent
// or hybrid model's state, which llama.cpp cannot roll back).
Napi::Value PlainCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonContext* context = info.Length() > 0 ? liveContext(env, info[0]) : nullptr;
  if (!context) return env.Undefined();
  const llama_model* model = ::api().model(context->ctx);
  return Napi::Boolean::New(env, !::api().recurrent(model) && !::api().hybrid(model));
}

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
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("stepUnavailable", Napi::Function::New(env, Ready));
  exports.Set("logitsAt", Napi::Function::New(env, LogitsAt));
  exports.Set("plainCache", Napi::Function::New(env, PlainCache));
}
