"""A local S3 for tests: moto's server (``moto[server]``, the dev extra) on 127.0.0.1, started and
stopped by the caller, with two buckets: ``open`` (readable by the ``reader`` user) and ``locked``
(denied to it by IAM).  ``env`` holds what a routekit process needs to reach it: the reader's keys
and ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.request

from _fake_chat import free_port, stop_process, wait_for_port


class LocalS3:
    def __init__(self, proc, endpoint: str, env: dict[str, str], admin):
        self.proc, self.endpoint, self.env, self.admin = proc, endpoint, env, admin

    def put(self, bucket: str, key: str, body: bytes) -> str:
        self.admin.put_object(Bucket=bucket, Key=key, Body=body)
        return f"s3://{bucket}/{key}"


def _auth_after(endpoint: str, count: str) -> None:
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=10).read()


@contextlib.contextmanager
def local_s3():
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_for_port(port, proc, 60):
            raise RuntimeError(f"moto server did not start: {proc.stderr.read().decode()[-2000:]}")
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="admin",
                  aws_secret_access_key="admin")
        iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="open-only", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*",
                           "Resource": ["arn:aws:s3:::open", "arn:aws:s3:::open/*"]}]}))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        for bucket in ("open", "locked"):
            s3.create_bucket(Bucket=bucket)
        _auth_after(endpoint, "0")  # from now on every request is checked against IAM
        admin_key = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_REGION": "us-east-1",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        # uploads go through the reader too (allowed on 'open'); 'locked' objects are put before auth
        yield LocalS3(proc, endpoint, env, _Uploader(endpoint, admin_key, kw))
    finally:
        stop_process(proc, 10)


class _Uploader:
    """put_object as the reader on 'open'; on 'locked' with authentication switched off for the call."""

    def __init__(self, endpoint, reader_key, kw):
        import boto3

        self.endpoint = endpoint
        self.reader = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **reader_key)
        self.admin = boto3.client("s3", **kw)

    def put_object(self, *, Bucket, Key, Body):
        if Bucket == "open":
            return self.reader.put_object(Bucket=Bucket, Key=Key, Body=Body)
        _auth_after(self.endpoint, "inf")
        try:
            return self.admin.put_object(Bucket=Bucket, Key=Key, Body=Body)
        finally:
            _auth_after(self.endpoint, "0")


def child_env(s3: LocalS3) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3.env)
    return env


@contextlib.contextmanager
def cutting_proxy(endpoint: str, cut_path: str, keep: int):
    """A TCP proxy in front of ``endpoint`` on 127.0.0.1 that forwards everything, except that a
    response to ``GET <cut_path>`` is cut off after ``keep`` bytes (the connection dropped half-way
    through a download).  Yields the proxy's endpoint URL."""
    import threading

    host, port = endpoint.split("//")[1].split(":")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    stop = threading.Event()

    def pipe(src, dst, limit=None):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[:limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def handle(client):
        upstream = socket.create_connection((host, int(port)))
        first = client.recv(65536)
        cut = first.startswith(f"GET {cut_path}".encode())
        upstream.sendall(first)
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        pipe(upstream, client, keep if cut else None)

    def accept():
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{lsock.getsockname()[1]}"
    finally:
        stop.set()
        lsock.close()
