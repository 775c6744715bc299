// One /v1/completions or /v1/chat/completions request from parse to last byte: validates it
// against the model, submits it to the scheduler, and turns scheduler events into an OpenAI
// response (one JSON body, or server-sent events). Lives on its exchange's HTTP strand.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "api/openai.h"
#include "common/clock.h"
#include "http/http_server.h"
#include "scheduler/request.h"
#include "server/models.h"
#include "server/server_metrics.h"

namespace ember::server {

class App;

class Generation : public std::enable_shared_from_this<Generation> {
 public:
  Generation(App& app, std::shared_ptr<http::Exchange> exchange, api::GenerationParams params,
             std::string endpoint);
  ~Generation();

  // Picks the model and asks for it (loading it when it is not); on any error answers the
  // client at once.
  void Start();

 private:
  // Runs on the strand once the model is loaded for this request (or cannot be): validates,
  // tokenizes and submits.
  void OnModel(Result<ModelLease> lease);
  Result<scheduler::GenerateRequest> BuildRequest();
  void Pump();
  void OnText(const scheduler::TextDelta& delta);
  void OnFinished(const scheduler::Finished& finished);
  void EnsureStreamStarted();
  void Fail(const Error& error);
  http::Headers ColdStartHeaders() const;

  App& app_;
  std::shared_ptr<http::Exchange> exchange_;
  api::GenerationParams params_;
  std::string endpoint_;
  std::string model_id_;
  ModelMetrics* model_metrics_ = nullptr;
  SteadyTime arrival_{};
  std::unique_ptr<ModelLease> lease_;  // while set, the model stays loaded
  api::ResponseMeta meta_;
  std::shared_ptr<scheduler::RequestStream> stream_;
  std::string text_;  // non-streamed responses
  bool stream_started_ = false;
  bool client_gone_ = false;
  std::uint64_t acquire_ticket_ = 0;  // while it waits for its model (ModelManager::Abandon)
  bool done_ = false;
  // Set while the scheduler owns the request, so events always find this object.
  std::shared_ptr<Generation> keep_alive_;
};

}  // namespace ember::server
