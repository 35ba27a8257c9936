#!/usr/bin/env python3
"""`polytune report` opened in a real browser (Debian's headless Chromium).

Trains a small run with evaluation by generation and early stopping, writes its report, then:
  * the HTML is self-contained: no <script>, no external (http, //) references;
  * Chromium renders it with no console message at all (the report has no scripts, so any
    message is an error); a negative control page with console.error and an uncaught
    exception must produce messages, which shows the check can fail;
  * a screenshot (PNG, decoded here with zlib) is not blank: enough non-white pixels and
    colours (the charts' lines);
  * it prints: --print-to-pdf gives a PDF of at least 2 pages.
The screenshot is kept at BUILD/tests/report/report.png (and the HTML beside it).
Exit code 77 (CTest: skipped) when chromium is not installed, saying so.
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def chromium(args, url, timeout=120):
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--enable-logging=stderr", "--v=0"] + args + [url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    console = [l for l in r.stderr.splitlines() if ":CONSOLE" in l]
    return r, console


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6), (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride, rows, prev = w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    if not shutil.which("chromium"):
        print("SKIPPED: chromium is not installed (apt-get install chromium; scripts/install-deps.sh does)")
        return 77
    polytune = os.path.join(args.build, "cli", "polytune")
    keep = os.path.abspath(os.path.join(args.build, "tests", "report"))
    os.makedirs(keep, exist_ok=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix="polytune-report-") as tmp:
        subprocess.run([polytune, "model", "init", "--out", f"{tmp}/model", "--hidden-size", "64", "--layers", "2",
                        "--heads", "4", "--kv-heads", "2", "--intermediate-size", "128", "--vocab-size", "320",
                        "--seed", "3"], check=True, capture_output=True)
        data = os.path.join(ROOT, "examples", "data")
        with open(f"{tmp}/run.yaml", "w") as f:
            f.write(f"""model: {{path: {tmp}/model, quantization: nf4}}
lora: {{r: 4, alpha: 8}}
data: {{train: {data}/instructions_train.jsonl, eval: {data}/instructions_eval.jsonl, max_seq_len: 96}}
training: {{lr: 0.05, lr_schedule: constant, max_steps: 40, micro_batch_size: 4, eval_every: 2, seed: 7,
           eval_generate: {{every: 4, examples: 16, max_new_tokens: 8}},
           early_stopping: {{metric: eval_loss, patience: 2}}}}
output_dir: {tmp}/out
""")
        subprocess.run([polytune, "train", f"{tmp}/run.yaml"], check=True, capture_output=True)
        html_path = os.path.join(keep, "report.html")
        subprocess.run([polytune, "report", f"{tmp}/out", "--out", html_path], check=True, capture_output=True)
    html = open(html_path, encoding="utf-8").read()
    if "<script" in html.lower():
        failures.append("the report has a <script>")
    external = re.findall(r'(?:src|href)\s*=\s*"(?:https?:)?//[^"]*"', html) + re.findall(r"url\((?:https?:)?//", html)
    if external:
        failures.append(f"the report references the network: {external[:3]}")
    for needle in ("<svg", "Sample generations", "Final figures", "chrF by language", "best checkpoint", "Job spec"):
        if needle not in html:
            failures.append(f"the report lacks {needle!r}")

    url = "file://" + html_path
    png = os.path.join(keep, "report.png")
    r, console = chromium(["--window-size=1280,2000", f"--screenshot={png}"], url)
    if r.returncode != 0 or not os.path.exists(png):
        failures.append(f"chromium screenshot failed ({r.returncode}): {r.stderr[-2000:]}")
    if console:
        failures.append("console messages while rendering the report: " + " | ".join(console[:5]))

    # Negative control: the same console check on a page that does log errors.
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.html")
        open(bad, "w").write('<!DOCTYPE html><p>x</p><script>console.error("negative control"); nope();</script>')
        _, bad_console = chromium(["--window-size=400,300", f"--screenshot={tmp}/bad.png"], "file://" + bad)
        if not any("negative control" in l for l in bad_console) or not any("Uncaught" in l for l in bad_console):
            failures.append(f"the console check did not see the negative control's errors: {bad_console}")

    if os.path.exists(png):
        w, h, bpp, rows = png_pixels(png)
        nonwhite, colours = 0, set()
        for y in range(0, h, 2):
            row = rows[y]
            for x in range(0, w * bpp, bpp * 2):
                px = bytes(row[x:x + 3])
                colours.add(px)
                nonwhite += px != b"\xff\xff\xff"
        sampled = (h // 2) * (w // 2)
        print(f"screenshot {png}: {w}x{h}, {nonwhite / sampled:.3f} of sampled pixels not white, "
              f"{len(colours)} colours")
        if nonwhite / sampled < 0.02 or len(colours) < 20:
            failures.append(f"the screenshot looks blank: {nonwhite}/{sampled} non-white, {len(colours)} colours")

    pdf = os.path.join(keep, "report.pdf")
    r, _ = chromium([f"--print-to-pdf={pdf}", "--no-pdf-header-footer"], url)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", open(pdf, "rb").read())) if os.path.exists(pdf) else 0
    print(f"printed {pdf}: {pages} pages")
    if pages < 2:
        failures.append(f"printing gave {pages} pages: {r.stderr[-1000:]}")

    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
