"""A real SMTP server for the delivery tests (tests/api/mail.rs): aiosmtpd on 127.0.0.1:PORT,
saving each message it accepts as DIR/<n>.eml (written to a temporary name, then renamed).

    python tests/mail/smtp_server.py PORT DIR
"""

import asyncio
import itertools
import os
import sys

from aiosmtpd.controller import Controller


class Save:
    def __init__(self, folder):
        self.folder = folder
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.numbers)
        tmp = os.path.join(self.folder, f".{os.getpid()}-{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.replace(tmp, os.path.join(self.folder, f"{os.getpid()}-{n}.eml"))
        return "250 OK"


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Save(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
