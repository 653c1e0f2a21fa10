// `tidal` entry point: dispatches to subcommands. Every failure a user can
// cause (bad flags, missing or corrupt files) ends in a one-line message on
// stderr and exit code 2, never a crash.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"tidal: an LLM serving engine"};
  app.require_subcommand(1);
  tidal::register_generate_command(app);
  tidal::register_bench_offline_command(app);
  tidal::register_serve_command(app);
  tidal::register_quantize_command(app);
  tidal::register_eval_command(app);
  tidal::register_admin_command(app);
  tidal::register_agreement_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    // A command that has already reported its outcome and only sets the exit code.
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tidal: error: %s\n", e.what());
    return 2;
  } catch (const tidal::Error& e) {
    std::fprintf(stderr, "tidal: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tidal: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
