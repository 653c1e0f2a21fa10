// The text of one completion as it grows token by token: incremental UTF-8
// safe detokenization plus stop strings. Text that could still turn out to
// be the start of a stop string is held back until it cannot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/sampling_params.h"
#include "model/tokenizer.h"

namespace tidal {

class OutputText {
 public:
  // `prev_token` is the last prompt token (decoding of the first generated
  // token depends on it for SentencePiece's leading space).
  OutputText(const Tokenizer& tokenizer, StopList stop, int32_t prev_token);

  // Adds a generated token; returns the text that is now safe to release.
  std::string push(int32_t token);
  // End of generation: releases everything still held (unless a stop string
  // was matched, in which case nothing more is released).
  std::string finish();

  bool stopped() const { return !matched_.empty(); }
  const std::string& matched() const { return matched_; }

 private:
  std::string release();

  const Tokenizer& tokenizer_;
  IncrementalDecoder decoder_;
  StopList stop_;
  std::string held_;
  std::string matched_;
};

}  // namespace tidal
