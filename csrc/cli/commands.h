// Each subcommand of the `tidal` program registers itself on the CLI app.
#pragma once

#include <CLI/CLI.hpp>

namespace tidal {

void register_generate_command(CLI::App& app);
void register_bench_offline_command(CLI::App& app);
void register_serve_command(CLI::App& app);
void register_quantize_command(CLI::App& app);
void register_eval_command(CLI::App& app);
void register_admin_command(CLI::App& app);
void register_agreement_command(CLI::App& app);

}  // namespace tidal
