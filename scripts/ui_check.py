# ruff: noqa: E501  (embedded JavaScript)
"""Check the Temporal UI as an admin sees it, with headless Chromium over CDP.

Against a running `make run` stack: logs in at /codec/login with the admin key, sets the UI's
codec settings (endpoint, include credentials — what an admin does once in the UI's codec
dialog), opens the workflow list filtered by `DunningStage = "mahnung_1"` and one contract,
saves screenshots and says whether the decrypted e-mail and the summaries are visible.

    apt-get install chromium
    .venv/bin/python scripts/ui_check.py <admin key> <contract id> [out dir]

Not part of the test suite: it needs Chromium, which the project does not install.
"""

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import websockets

AK = sys.argv[1]
CONTRACT = sys.argv[2]
OUT = sys.argv[3] if len(sys.argv) > 3 else "/tmp/mahnwerk-ui"


async def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    proc = subprocess.Popen(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=9333",
            "--user-data-dir=" + OUT + "/profile",
            "--window-size=1600,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            try:
                tabs = json.load(urllib.request.urlopen("http://127.0.0.1:9333/json"))
                break
            except Exception:
                time.sleep(0.2)
        ws_url = [t for t in tabs if t["type"] == "page"][0]["webSocketDebuggerUrl"]
        async with websockets.connect(ws_url, max_size=50_000_000) as ws:
            n = 0

            async def cmd(method, **params):
                nonlocal n
                n += 1
                await ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == n:
                        return msg.get("result", msg)

            async def go(url, wait=6):
                await cmd("Page.navigate", url=url)
                await asyncio.sleep(wait)

            async def shot(name):
                r = await cmd("Page.captureScreenshot", format="png")
                open(f"{OUT}/{name}.png", "wb").write(base64.b64decode(r["data"]))

            async def js(expr):
                r = await cmd(
                    "Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True
                )
                return r.get("result", {}).get("value")

            await cmd("Page.enable")
            # 1. log in to the codec endpoint (cookie for /codec)
            await go("http://localhost:8000/codec/login", 2)
            await go("http://localhost:8000/codec/login", 3)
            print(
                "login form:",
                await js(
                    f"""(() => {{ const i = document.querySelector('input[name=key]'); i.value = '{AK}'; i.form.submit(); return 'submitted'; }})()"""
                ),
            )
            await asyncio.sleep(3)
            print("after login:", (await js("document.body.innerText"))[:200])
            print("cookies:", await cmd("Network.getAllCookies"))
            # 2. the UI's codec settings (what an admin sets once in the UI's codec dialog)
            await go("http://localhost:8233/", 4)
            await js("""localStorage.setItem('endpoint', JSON.stringify('http://localhost:8000/codec'));
                        localStorage.setItem('includeCredentials', JSON.stringify(true));
                        localStorage.setItem('overrideRemoteCodecConfiguration', JSON.stringify(true)); 'ok'""")
            # 3. the list filtered by the search attribute
            q = urllib.parse.quote('DunningStage = "mahnung_1"')
            await go(f"http://localhost:8233/namespaces/default/workflows?query={q}", 8)
            await shot("list-mahnung_1")
            print(
                "list text has contract:", CONTRACT in (await js("document.body.innerText") or "")
            )
            # 4. the workflow's history: decrypted input
            await go(
                "http://localhost:8233/namespaces/default/workflows/contract-" + CONTRACT + "", 10
            )
            r = await cmd(
                "Runtime.evaluate",
                expression="""fetch('http://localhost:8000/codec/decode', {method:'POST', credentials:'include', headers:{'Content-Type':'application/json','X-Namespace':'default'}, body: JSON.stringify({payloads: []})}).then(r=>r.status + ' ' + r.headers.get('content-type')).catch(e=>'ERR '+e)""",
                awaitPromise=True,
                returnByValue=True,
            )
            print("decode from the UI page:", r)
            print("localStorage:", await js("JSON.stringify(Object.assign({}, localStorage))"))
            await shot("workflow")
            body = await js("document.body.innerText") or ""
            print(
                "summary/details visible:",
                "Waiting" in body or "wait until" in body,
                "| email decrypted:",
                '"email"' in body,
            )
            await go(
                "http://localhost:8233/namespaces/default/workflows/contract-"
                + CONTRACT
                + "/history",
                10,
            )
            await shot("history")
            body = await js("document.body.innerText") or ""
            print(
                "history: email decrypted:",
                '"email"' in body,
                "| charge summary:",
                "charge 99,00" in body,
            )
            open(f"{OUT}/history.txt", "w").write(body)
    finally:
        proc.terminate()


asyncio.run(main())
