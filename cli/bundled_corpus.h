// The bundled multilingual instruction data, compiled into polytune-engine.
#pragma once

namespace polytune::cli {

const char* BundledCorpus();  // JSONL text

}  // namespace polytune::cli
