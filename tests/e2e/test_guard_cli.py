"""`candor guard` on whole folders and pipelines: files, folders walked recursively, quoted
globs, one message per line; text, JSON and SARIF 2.1.0 reports; the exit status of the worst
verdict; and bad input (invalid UTF-8, binary files, files over the size limit, unreadable
paths) reported per file while the rest are still checked."""
import json
import os
import shutil
import subprocess
import tempfile

from harness import BINARY, ROOT

RULES = os.path.join(ROOT, "rules")
CARD = "4242 4242 4242 4242"


class Tree:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cd_guard_cli.")

    def put(self, rel, data):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return path

    def guard(self, *args, input=None):
        p = subprocess.run([BINARY, "guard", "--rules", RULES, *args], capture_output=True,
                           text=True, cwd=self.dir, input=input, timeout=600,
                           env=dict(os.environ, LC_ALL="C.UTF-8"))
        return p.returncode, p.stdout, p.stderr

    def stop(self):
        pass

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def setup_module():
    t = Tree()
    t.put("tpl/welcome.txt", "Hi {{first_name}}, welcome aboard. Your order ships on Monday.\n")
    t.put("tpl/promo/flash.txt", "Subject: Flash sale\n\nHurry, only 2 left!\n")
    t.put("tpl/billing/card.md", f"Thanks, we charged the card {CARD} today.\n")
    t.put("tpl/.git/config", "Only 2 left, buy now!\n")
    t.put("tpl/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    t.put("tpl/broken.txt", "Line one is fine.\nBad \xff\xfe byte here.\n".encode("latin-1"))
    t.put("tpl/big.txt", "Your parcel is on its way. " * 200)
    return t


def teardown_module(t):
    t.cleanup()


def test_folder_text_report_and_exit_status(t):
    code, out, err = t.guard("--max-size", "4000", "tpl")
    # Unchecked input makes the run fail (exit 4), and the rest is still checked and reported.
    assert code == 4, (code, out, err)
    assert "tpl/promo/flash.txt:3:1: PRESSURE.FALSE_URGENCY [pressure, warn]" in out, out
    assert "tpl/billing/card.md:1:" in out and "PII.CARD [pii, block]" in out, out
    assert CARD not in out and "•••• 4242" in out, out  # masked, as the API shows it
    assert "tpl/welcome.txt" not in out  # nothing to say about a clean template
    assert ".git" not in out + err
    assert "tpl/broken.txt: not valid UTF-8 at byte 22 (line 2)" in err, err
    assert "tpl/big.txt: 5400 bytes, above the limit of 4000 bytes (--max-size)" in err, err
    assert "logo.png" not in err  # a binary file found in a folder is skipped, not an error
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("candor guard: 3 messages checked in 6 files: 1 allow, 1 warn, "
                              "1 block; 2 could not be checked; 1 binary file skipped"), summary
    # Narrowed to what can be checked: the worst verdict is the exit status.
    code, out, _ = t.guard("--include", "*.txt,*.md", "--exclude", "broken.txt,big.txt", "tpl")
    assert code == 2, out
    code, out, _ = t.guard("--exclude", "billing,broken.txt,big.txt,logo.png", "tpl")
    assert code == 1, out
    code, out, _ = t.guard("--include", "welcome.txt", "tpl")
    assert code == 0 and out.startswith("candor guard: 1 message checked in 1 file: 1 allow"), out
    code, out, _ = t.guard("--include", "promo/*.txt", "tpl")
    assert code == 1 and "flash.txt" in out, out


def test_purpose_and_channel_apply_to_every_file(t):
    code, out, _ = t.guard("--purpose", "marketing", "--channel", "email", "tpl/promo")
    assert code == 2 and "[pressure, block]" in out, out
    assert "(purpose marketing, channel email, outbound)" in out, out
    code, out, _ = t.guard("--purpose", "service", "tpl/promo")
    assert code == 1, out


def test_json_report(t):
    code, out, err = t.guard("--format", "json", "--max-size", "4000", "tpl")
    assert code == 4, err
    doc = json.loads(out)
    s = doc["summary"]
    assert (s["files"], s["messages"], s["allow"], s["warn"], s["block"], s["errors"],
            s["skipped"]) == (6, 3, 1, 1, 1, 2, 1), s
    by_path = {r["path"]: r for r in doc["results"]}
    assert set(by_path) == {"tpl/welcome.txt", "tpl/promo/flash.txt", "tpl/billing/card.md"}
    card = [f for f in by_path["tpl/billing/card.md"]["findings"] if f["rule"] == "PII.CARD"][0]
    assert (card["line"], card["column"]) == (1, 29), card
    assert CARD not in out and card["match"] == "•••• 4242", card
    flash = [f for f in by_path["tpl/promo/flash.txt"]["findings"]
             if f["rule"] == "PRESSURE.FALSE_URGENCY"][0]
    assert (flash["line"], flash["column"], flash["end_line"]) == (3, 1, 3), flash
    assert {e["path"] for e in doc["errors"]} == {"tpl/broken.txt", "tpl/big.txt"}
    assert doc["skipped"] == [{"path": "tpl/logo.png", "reason": "binary file"}]
    assert err.startswith("candor guard: 3 messages checked"), err


def test_sarif_report(t):
    code, out, _ = t.guard("--format", "sarif", "--max-size", "4000", "tpl")
    assert code == 4
    doc = json.loads(out)
    assert doc["version"] == "2.1.0" and "sarif-2.1.0" in doc["$schema"]
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "candor guard"
    assert run["columnKind"] == "unicodeCodePoints"
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids)) and "PII.CARD" in ids and "PRESSURE.FALSE_URGENCY" in ids
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note")
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert loc["region"]["startLine"] >= 1 and loc["region"]["startColumn"] >= 1
    card = [r for r in run["results"] if r["ruleId"] == "PII.CARD"][0]
    loc = card["locations"][0]["physicalLocation"]
    assert card["level"] == "error"
    assert loc["artifactLocation"]["uri"] == "tpl/billing/card.md"
    raw = open(os.path.join(t.dir, "tpl/billing/card.md"), "rb").read()
    off, n = loc["region"]["byteOffset"], loc["region"]["byteLength"]
    assert raw[off:off + n].decode() == CARD
    assert CARD not in out
    inv = run["invocations"][0]
    assert inv["executionSuccessful"] is False
    notes = {(n["level"], n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
             for n in inv["toolExecutionNotifications"]}
    assert notes == {("error", "tpl/broken.txt"), ("error", "tpl/big.txt"),
                     ("note", "tpl/logo.png")}, notes
    # A clean run is a successful execution with no results.
    code, out, _ = t.guard("--format", "sarif", "tpl/welcome.txt")
    doc = json.loads(out)
    assert code == 0 and doc["runs"][0]["results"] == []
    assert doc["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_lines_one_message_per_line(t):
    path = t.put("lines/messages.txt", "Your refund is on its way.\n\nHurry, only 2 left!\r\n"
                 "Thanks for waiting.\nCall me on 4242 4242 4242 4242\n".replace("4242 4242 4242 4242", CARD))
    code, out, _ = t.guard("--lines", "--format", "json", path)
    assert code == 2, out
    doc = json.loads(out)
    lines = {r["line"]: r["verdict"] for r in doc["results"]}
    assert lines == {1: "allow", 3: "warn", 4: "allow", 5: "block"}, lines
    f = [x for r in doc["results"] if r["line"] == 5 for x in r["findings"]][0]
    assert (f["line"], f["column"]) == (5, 12), f
    # A bad line is reported on its own; the other lines are still checked.
    bad = t.put("lines/bad.txt", b"Fine message.\nBroken \xc3\x28 here.\nHurry, act now!\n")
    code, out, err = t.guard("--lines", bad)
    assert code == 4, (out, err)
    assert "bad.txt: line 2: not valid UTF-8 at byte 7 of the line" in err, err
    assert "bad.txt:3:1: PRESSURE.FALSE_URGENCY" in out, out
    # Standard input as a pipeline.
    code, out, _ = t.guard("--lines", "-", input="All good here.\nLast chance to buy!\n")
    assert code == 1 and "<stdin>:2:1: PRESSURE.FALSE_URGENCY" in out, out


def test_globs_and_bad_paths(t):
    code, out, err = t.guard("tpl/promo/*.txt", "tpl/nothing/*.md", "no-such-file.txt")
    assert code == 4, (out, err)
    assert "flash.txt" in out
    assert "tpl/nothing/*.md: no file matches this pattern" in err, err
    assert "no-such-file.txt: cannot read: No such file or directory" in err, err
    code, _, err = t.guard("tpl/logo.png")
    assert code == 4 and "tpl/logo.png: a binary file (it holds NUL bytes), not checked" in err


def test_usage_errors(t):
    for args, want in ((("--format", "xml", "tpl"), "--format must be text, json or sarif"),
                       (("--purpose", "spam", "tpl"), "--purpose must be one of"),
                       (("--jobs", "0", "tpl"), "--jobs must be a whole number"),
                       (("--max-size", "99999999999", "tpl"), "--max-size must be"),
                       (("-", "-"), "'-' (standard input) may be named once"),
                       (("--bogus", "tpl"), "unknown option")):
        code, _, err = t.guard(*args)
        assert code == 3 and want in err, (args, code, err)
    code, _, err = t.guard()
    assert code == 3
    p = subprocess.run([BINARY, "guard", "--rules", "/nonexistent/rules", "tpl"],
                       capture_output=True, text=True, cwd=t.dir)
    assert p.returncode == 4 and "rules" in p.stderr, p.stderr


def test_many_files_in_parallel_same_report(t):
    for i in range(300):
        body = (f"Order {i} has shipped." if i % 3 else
                "Only 3 left in stock, order now!" if i % 2 else f"Card {CARD}")
        t.put(f"many/{i // 50}/msg{i:03}.txt", body)
    one = t.guard("--jobs", "1", "--format", "json", "many")
    two = t.guard("--jobs", "4", "--format", "json", "many")
    assert one[0] == two[0] == 2
    assert one[1] == two[1]
    s = json.loads(one[1])["summary"]
    assert (s["messages"], s["block"], s["warn"], s["allow"]) == (300, 50, 50, 200), s
