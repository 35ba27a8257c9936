// Chunked transfers over gRPC streams, verified by sha256 at the receiving end. One place for
// the chunk size limit, the header-on-first-chunk convention and the integrity check, used
// by artifact uploads (CLI), checkpoint uploads (workers) and downloads (CLI and workers).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "polytune/common/sha256.h"
#include "polytune/rpc/chunk_assembler.h"
#include "polytune/rpc/grpc_config.h"
#include "polytune/rpc/status.h"
#include "polytune/v1/polytune.grpc.pb.h"

namespace polytune::rpc {

// DATA_LOSS unless sha256(data) == expected (lower-case hex). `what` names the payload.
absl::Status VerifySha256(const std::string& data, const std::string& expected, const std::string& what);

// Client side of an upload: sends `data` in chunks of at most kMaxChunkBytes (one empty chunk
// for empty data), `header` filling the first chunk's metadata, then finishes the call.
template <typename Chunk>
absl::Status WriteChunked(grpc::ClientWriterInterface<Chunk>* writer, const std::string& data,
                          const std::function<void(Chunk&)>& header) {
  for (size_t pos = 0; pos < data.size() || pos == 0; pos += kMaxChunkBytes) {
    Chunk c;
    if (pos == 0) header(c);
    c.mutable_data()->assign(data, pos, kMaxChunkBytes);  // one copy, straight into the message
    if (!writer->Write(c)) break;                         // the server ended the call; Finish() says why
    if (data.empty()) break;
  }
  writer->WritesDone();
  return FromGrpc(writer->Finish());
}

// Server side of an upload: `on_first` sees the first chunk (its metadata) before any bytes,
// then `sink` gets every chunk's bytes as they arrive, so nothing buffers the whole upload.
// Stops at the first error of either, or at a chunk over kMaxChunkBytes (INVALID_ARGUMENT);
// a call with no chunk at all is INVALID_ARGUMENT.
template <typename Chunk>
absl::Status ReadChunks(grpc::ServerReaderInterface<Chunk>* reader,
                        const std::function<absl::Status(const Chunk&)>& on_first,
                        const std::function<absl::Status(absl::string_view)>& sink) {
  Chunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (chunk.data().size() > static_cast<size_t>(kMaxChunkBytes))
      return absl::InvalidArgumentError(absl::StrCat("chunk of ", chunk.data().size(), " bytes; at most ",
                                                     kMaxChunkBytes, " per chunk; nothing was stored"));
    if (first) {
      absl::Status st = on_first(chunk);
      if (!st.ok()) return st;
      first = false;
    }
    absl::Status st = sink(chunk.data());
    if (!st.ok()) return st;
  }
  if (first) return absl::InvalidArgumentError("an upload without a single chunk; nothing was stored");
  return absl::OkStatus();
}

// Server side of a download: streams the file at `path` as DownloadChunks of at most
// kMaxChunkBytes, each read straight into its message (the file is never held whole); the
// first carries the file's size. One empty chunk for an empty file.
grpc::Status StreamFile(grpc::ServerWriterInterface<v1::DownloadChunk>* writer, const std::string& path);

// DATA_LOSS naming `what` unless `actual` equals `expected`.
absl::Status Sha256Mismatch(const std::string& expected, const std::string& actual, const std::string& what);

// Client side of a download: the artifact `sha256`, verified before it is returned. Works with
// both services' Download (JobService and WorkerService share the messages).
template <typename Stub>
absl::StatusOr<std::string> DownloadVerified(Stub& stub, const std::string& sha256) {
  v1::DownloadRequest req;
  req.set_sha256(sha256);
  auto ctx = ContextWithDeadline(kTransferDeadlineSeconds);
  auto reader = stub.Download(ctx.get(), req);
  // Hashing and joining the chunks run on a helper thread while this one receives.
  std::unique_ptr<ChunkAssembler> assembler;
  v1::DownloadChunk chunk;
  for (bool first = true; reader->Read(&chunk); first = false) {
    if (first) {
      // Room for all of it at once (no regrowth copies), up to a sane size for one stream.
      const int64_t total = chunk.total_bytes();
      assembler = std::make_unique<ChunkAssembler>(total > 0 && total <= (int64_t{1} << 32) ? total : 0);
    }
    assembler->Add(std::move(*chunk.mutable_data()));
  }
  absl::Status st = FromGrpc(reader->Finish());
  if (!st.ok()) return st;
  if (!assembler) assembler = std::make_unique<ChunkAssembler>();
  ChunkAssembler::Result whole = assembler->Finish();
  st = Sha256Mismatch(sha256, whole.sha256_hex, absl::StrCat("artifact ", sha256));
  if (!st.ok()) return st;
  return std::move(whole.data);
}

// Writes a verified download to `path` atomically (temp file, fsync, rename).
absl::Status CommitVerifiedFile(const std::string& data, const std::string& path);

// Unpacks a verified checkpoint bundle and commits `files` of it (all when empty) into `dir`
// atomically: `dir` holds either its old contents or all the new files, never a mix.
absl::Status CommitBundleToDirectory(const std::string& bundle, const std::string& dir,
                                     const std::vector<std::string>& files);

// Unpacks a verified bundle and writes `files` of it into the existing folder `dir`, each
// file replaced atomically (temp file, fsync, rename); nothing else in `dir` is touched.
absl::Status CommitBundleFilesInto(const std::string& bundle, const std::string& dir,
                                   const std::vector<std::string>& files);

}  // namespace polytune::rpc
