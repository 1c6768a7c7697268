#!/usr/bin/python3
"""A loopback stand-in for MAST and IRSA, for tests and benchmarks (no internet here).

It serves the FITS files of a directory tree (`astrid simulate`'s archive/: one directory per
target) through the same request and response shapes as the real services:

  MAST  POST /api/v0/invoke   form field `request` = {"service", "params", "format", "pagesize", "page"}
          Mast.Caom.Filtered.Position  params {"columns", "filters": [{"paramName", "values"}], "position": "ra, dec, r"}
          Mast.Caom.Products           params {"obsid": "id1,id2,..."}
        answers {"status": "COMPLETE", "msg": "", "fields": [...], "data": [...], "paging": {...}} with
        CAOM observation fields (obsid, obs_collection, instrument_name, filters, dataproduct_type,
        calib_level, t_min, t_max, t_exptime, s_ra, s_dec, s_region, obs_id, target_name, ...) and
        product fields (obsID, parent_obsid, productFilename, dataURI, size, productType,
        productSubGroupDescription, description, calib_level, ...).
        GET /api/v0.1/Download/file?uri=mast:...   the file, with Range support
  IRSA  GET /ibe/search/ztf/products/sci?POS=ra,dec&WHERE=obsjd>=a AND obsjd<=b&ct=csv
        GET /ibe/search/ztf/products/ref?POS=ra,dec&ct=csv
        GET /ibe/data/ztf/products/<path>          the file
        (only with --ztf: each target directory's earliest image is its field's reference co-add,
        the others are science images)

Every observation also lists a PREVIEW jpeg and an AUXILIARY weight map (never served: a client
that downloads them has ignored productType).

Fault injection (tests): POST /_control with JSON {"match": "substring of the request path",
"fault": KIND, "times": N, "retry_after": S, "delay": S, "rate": BYTES_PER_S}; KIND is one of
status500, status503, status404, drop (half the body, then the connection closes), slow (sleep
`delay` before answering), short_length (Content-Length 100 bytes short, body cut to it),
long_length (Content-Length 100 bytes long, then close), corrupt (bytes flipped mid-file),
throttle (send at `rate`). GET /_stats: request counts and complete bodies per file;
POST /_reset: no faults, zero counts.

usage: archive_server.py --root DIR [--port 0] [--port-file F] [--write-checksums] [--ztf]
"""
import argparse
import glob
import json
import math
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

CAOM_FIELDS = ["intentType", "obs_collection", "provenance_name", "instrument_name", "project", "filters",
               "wavelength_region", "target_name", "target_classification", "obs_id", "s_ra", "s_dec",
               "dataproduct_type", "proposal_pi", "calib_level", "t_min", "t_max", "t_exptime", "em_min", "em_max",
               "obs_title", "t_obs_release", "proposal_id", "proposal_type", "sequence_number", "s_region",
               "jpegURL", "dataURL", "dataRights", "mtFlag", "srcDen", "obsid", "distance"]
PRODUCT_FIELDS = ["obsID", "obs_collection", "dataproduct_type", "obs_id", "description", "type", "dataURI",
                  "productType", "productGroupDescription", "productSubGroupDescription",
                  "productDocumentationURL", "project", "prvversion", "proposal_id", "productFilename", "size",
                  "parent_obsid", "dataRights", "calib_level"]


def is_fits(name):
    n = name.lower()
    for z in (".gz", ".fz"):
        if n.endswith(z):
            n = n[:-3]
    return n.endswith((".fits", ".fit", ".fts"))


def image_hdu(hdul):
    for h in hdul:
        if h.data is not None and getattr(h.data, "ndim", 0) == 2:
            return h
    raise ValueError("no image")


def sky_dist(ra1, dec1, ra2, dec2):
    r = math.radians
    c = (math.sin(r(dec1)) * math.sin(r(dec2)) + math.cos(r(dec1)) * math.cos(r(dec2)) * math.cos(r(ra1 - ra2)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


class Archive:
    def __init__(self, root, write_checksums, ztf):
        self.root = os.path.abspath(root)
        self.observations = []   # CAOM rows
        self.products = {}       # obsid -> product rows
        self.files = {}          # URI or URL path -> local file
        self.ztf_sci, self.ztf_ref = [], []
        paths = sorted(p for p in glob.glob(os.path.join(self.root, "*", "*")) if is_fits(p))
        if write_checksums:
            for p in paths:
                with fits.open(p) as h:
                    h.writeto(p + ".tmp", overwrite=True, checksum=True, output_verify="silentfix")
                os.replace(p + ".tmp", p)
        by_dir = {}
        for i, p in enumerate(paths):
            with fits.open(p) as hdul:
                h = image_hdu(hdul)
                hdr = h.header
                ny, nx = h.data.shape
                w = WCS(hdr)
            corners = w.calc_footprint(axes=(nx, ny))
            ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
            mjd = float(hdr.get("MJD-OBS"))
            exptime = float(hdr.get("EXPTIME", 0.0))
            coll = str(hdr.get("TELESCOP", "UNKNOWN")).strip()
            name = os.path.basename(p)
            obsid = str(20000000 + i)
            obs_id = name.split(".")[0]
            uri = f"mast:{coll}/product/{name}"
            row = {k: None for k in CAOM_FIELDS}
            row.update({
                "intentType": "science", "obs_collection": coll, "provenance_name": "astrid-sim",
                "instrument_name": str(hdr.get("INSTRUME", "")).strip(), "project": coll,
                "filters": str(hdr.get("FILTER", "")).split(" ")[0], "wavelength_region": "OPTICAL",
                "target_name": os.path.basename(os.path.dirname(p)), "obs_id": obs_id, "s_ra": float(ra),
                "s_dec": float(dec), "dataproduct_type": "image", "calib_level": 2, "t_min": mjd,
                "t_max": mjd + exptime / 86400.0, "t_exptime": exptime, "obs_title": "simulated campaign",
                "s_region": "POLYGON ICRS " + " ".join(f"{a:.8f} {d:.8f}" for a, d in corners),
                "dataURL": uri, "dataRights": "PUBLIC", "obsid": obsid, "mtFlag": False})
            self.observations.append({"row": row, "corners": corners, "wcs": w, "shape": (ny, nx)})
            size = os.path.getsize(p)

            def product(fname, uri_, ptype, sub, desc, sz):
                r = {k: None for k in PRODUCT_FIELDS}
                r.update({"obsID": obsid, "obs_collection": coll, "dataproduct_type": "image", "obs_id": obs_id,
                          "description": desc, "type": "S", "dataURI": uri_, "productType": ptype,
                          "productGroupDescription": "Minimum Recommended Products" if ptype == "SCIENCE" else "",
                          "productSubGroupDescription": sub, "project": coll, "productFilename": fname,
                          "size": sz, "parent_obsid": obsid, "dataRights": "PUBLIC", "calib_level": 2})
                return r
            self.products[obsid] = [
                product(name, uri, "SCIENCE", "SCI", "calibrated image", size),
                product(obs_id + "_wht.fits", f"mast:{coll}/product/{obs_id}_wht.fits", "AUXILIARY", "WHT",
                        "weight map", size),
                product(obs_id + "_preview.jpg", f"mast:{coll}/product/{obs_id}_preview.jpg", "PREVIEW", "JPG",
                        "preview", 1000),
            ]
            self.files[uri] = p
            by_dir.setdefault(os.path.dirname(p), []).append((mjd, p, corners, exptime, hdr))
        if ztf:
            self._ztf(by_dir)

    def _ztf(self, by_dir):
        for k, d in enumerate(sorted(by_dir)):
            images = sorted(by_dir[d], key=lambda t: t[0])
            field, ccd, qid = 600 + k, 1, 1
            for j, (mjd, p, corners, exptime, hdr) in enumerate(images):
                band = str(hdr.get("FILTER", "r")).strip()[:1].lower() or "r"
                fc = "z" + band
                corner_cols = {f"{c}{i + 1}": v for i, (a, b) in enumerate(corners) for c, v in (("ra", a), ("dec", b))}
                if j == 0:
                    f6 = f"{field:06d}"
                    fname = f"ztf_{f6}_{fc}_c{ccd:02d}_q{qid}_refimg.fits"
                    rel = f"ref/{f6[:3]}/field{f6}/{fc}/ccd{ccd:02d}/q{qid}/{fname}"
                    date = Time(mjd, format="mjd").iso
                    self.ztf_ref.append(dict(field=field, ccdid=ccd, qid=qid, filtercode=fc, startobsdate=date + "+00",
                                             endobsdate=date + "+00", nframes=1, **corner_cols,
                                             ra=corners[:, 0].mean(), dec=corners[:, 1].mean(), _file=p))
                else:
                    t = Time(mjd, format="mjd")
                    ymd = t.strftime("%Y%m%d")
                    frac = f"{mjd - math.floor(mjd):.6f}"[2:]
                    ffd = ymd + frac
                    fname = f"ztf_{ffd}_{field:06d}_{fc}_c{ccd:02d}_o_q{qid}_sciimg.fits"
                    rel = f"sci/{ffd[:4]}/{ffd[4:8]}/{ffd[8:]}/{fname}"
                    self.ztf_sci.append(dict(field=field, ccdid=ccd, qid=qid, filtercode=fc, obsjd=mjd + 2400000.5,
                                             filefracday=ffd, imgtypecode="o", exptime=exptime, **corner_cols,
                                             ra=corners[:, 0].mean(), dec=corners[:, 1].mean(), _file=p))
                self.files["/ibe/data/ztf/products/" + rel] = p

    def contains(self, obs, ra, dec, radius):
        if sky_dist(ra, dec, obs["row"]["s_ra"], obs["row"]["s_dec"]) <= radius:
            return True
        x, y = obs["wcs"].all_world2pix([[ra, dec]], 0)[0]
        ny, nx = obs["shape"]
        return -0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5


def matches(row, flt):
    name, values = flt["paramName"], flt["values"]
    v = row.get(name)
    if not values:
        return True
    if isinstance(values[0], dict):  # ranges
        return v is not None and any(r.get("min", -math.inf) <= v <= r.get("max", math.inf) for r in values)
    return v in values or str(v) in [str(x) for x in values]


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.requests = {}
        self.full_bodies = {}
        self.bytes = 0

    def take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f["match"] in path and f["times"] != 0:
                    f["times"] -= 1
                    return dict(f)
        return None


def make_handler(archive, state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def count(self):
            with state.lock:
                key = urllib.parse.urlsplit(self.path).path
                state.requests[key] = state.requests.get(key, 0) + 1

        def send_json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_text(self, text, status=200, ctype="text/plain", extra=()):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def apply_status_fault(self, fault):
            """True when the fault answered the request."""
            if fault is None:
                return False
            kind = fault["fault"]
            if kind == "slow":
                time.sleep(fault.get("delay", 5))
                return False
            if kind in ("status500", "status503", "status404"):
                code = int(kind[-3:])
                extra = [("Retry-After", str(fault["retry_after"]))] if fault.get("retry_after") is not None else []
                self.send_text(f"injected {code}", code, extra=extra)
                return True
            return False

        # ---- MAST ---------------------------------------------------------------------------
        def invoke(self, form):
            req = json.loads(form["request"][0])
            service, params = req["service"], req.get("params", {})
            pagesize, page = int(req.get("pagesize", 50000)), int(req.get("page", 1))
            if service == "Mast.Caom.Filtered.Position":
                ra, dec, radius = (float(x) for x in params["position"].split(","))
                rows = [o["row"] for o in archive.observations if archive.contains(o, ra, dec, radius)
                        and all(matches(o["row"], f) for f in params.get("filters", []))]
                fields = CAOM_FIELDS
            elif service == "Mast.Caom.Products":
                ids = [x.strip() for x in str(params["obsid"]).split(",") if x.strip()]
                rows = [p for i in ids for p in archive.products.get(i, [])]
                fields = PRODUCT_FIELDS
            else:
                return self.send_json({"status": "ERROR", "msg": f"unknown service {service}", "data": []})
            n = len(rows)
            pages = max(1, math.ceil(n / pagesize))
            chunk = rows[(page - 1) * pagesize: page * pagesize]
            self.send_json({"status": "COMPLETE", "msg": "", "fields": [{"name": f, "type": "string"} for f in fields],
                            "data": chunk, "paging": {"page": page, "pageSize": pagesize, "pagesFiltered": pages,
                                                      "rows": len(chunk), "rowsFiltered": n, "rowsTotal": n}})

        # ---- IRSA ---------------------------------------------------------------------------
        def ibe_search(self, kind, query):
            ra, dec = (float(x) for x in query["POS"][0].split(","))
            rows = archive.ztf_sci if kind == "sci" else archive.ztf_ref
            lo, hi = -math.inf, math.inf
            if "WHERE" in query:
                for part in query["WHERE"][0].split(" AND "):
                    if ">=" in part:
                        lo = float(part.split(">=")[1])
                    elif "<=" in part:
                        hi = float(part.split("<=")[1])
            out = []
            for r in rows:
                ras = [r[f"ra{i}"] for i in range(1, 5)]
                decs = [r[f"dec{i}"] for i in range(1, 5)]
                if not (min(ras) <= ra <= max(ras) and min(decs) <= dec <= max(decs)):
                    continue
                if kind == "sci" and not (lo <= r["obsjd"] <= hi):
                    continue
                out.append(r)
            cols = [c for c in (rows[0].keys() if rows else ["field"]) if not c.startswith("_")]
            lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in out]
            self.send_text("\n".join(lines) + "\n", ctype="text/csv")

        # ---- files ----------------------------------------------------------------------------
        def send_file(self, path, fault):
            size = os.path.getsize(path)
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= size:
                    return self.send_text("range not satisfiable", 416, extra=[("Content-Range", f"bytes */{size}")])
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
            kind = fault["fault"] if fault else None
            length = len(data)
            if kind == "corrupt":
                data = bytearray(data)
                mid = len(data) // 2
                for i in range(mid, min(mid + 64, len(data))):
                    data[i] ^= 0x5A
                data = bytes(data)
            if kind == "short_length":
                length = max(0, length - 100)
                data = data[:length]
            if kind == "long_length":
                length += 100
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/fits")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            if kind in ("drop", "long_length"):
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if kind == "drop":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                with state.lock:
                    state.bytes += len(data) // 2
                return
            if kind == "throttle":
                rate = float(fault.get("rate", 1e6))
                step = max(1, int(rate / 20))
                for i in range(0, len(data), step):
                    time.sleep(step / rate)
                    self.wfile.write(data[i:i + step])
            else:
                self.wfile.write(data)
            self.wfile.flush()
            with state.lock:
                state.bytes += len(data)
                if start == 0 and kind is None or kind == "throttle":
                    name = os.path.basename(path)
                    state.full_bodies[name] = state.full_bodies.get(name, 0) + 1
            if kind == "long_length":
                self.connection.shutdown(socket.SHUT_RDWR)

        def bad_token(self):
            """A request carrying an Authorization header other than the expected bearer token (none is fine)."""
            token = os.environ.get("ARCHIVE_SERVER_TOKEN")
            got = self.headers.get("Authorization", "")
            return bool(token) and got not in ("", "Bearer " + token)

        def do_GET(self):
            self.count()
            parts = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parts.query)
            if parts.path == "/_stats":
                with state.lock:
                    return self.send_json({"requests": state.requests, "full_bodies": state.full_bodies,
                                           "bytes": state.bytes})
            fault = state.take_fault(self.path)
            if self.apply_status_fault(fault):
                return
            if self.bad_token():
                return self.send_text("bad token", 401)
            if parts.path == "/api/v0.1/Download/file":
                uri = query.get("uri", [""])[0]
                if uri not in archive.files:
                    return self.send_text(f"no such product: {uri}", 404)
                return self.send_file(archive.files[uri], fault)
            if parts.path in ("/ibe/search/ztf/products/sci", "/ibe/search/ztf/products/ref"):
                return self.ibe_search(parts.path.rsplit("/", 1)[1], query)
            if parts.path in archive.files:
                return self.send_file(archive.files[parts.path], fault)
            self.send_text("not found", 404)

        def do_POST(self):
            self.count()
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length).decode()
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/_control":
                spec = json.loads(body if body.startswith("{") else urllib.parse.parse_qs(body)["spec"][0])
                spec.setdefault("times", 1)
                with state.lock:
                    state.faults.append(spec)
                return self.send_json({"ok": True})
            if parts.path == "/_reset":
                with state.lock:
                    state.faults.clear()
                    state.requests.clear()
                    state.full_bodies.clear()
                    state.bytes = 0
                return self.send_json({"ok": True})
            if self.apply_status_fault(state.take_fault(self.path)):
                return
            if parts.path == "/api/v0/invoke":
                if self.bad_token():
                    return self.send_text("bad token", 401)
                return self.invoke(urllib.parse.parse_qs(body))
            self.send_text("not found", 404)

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="directory with one sub-directory of FITS files per target")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--write-checksums", action="store_true", help="add DATASUM/CHECKSUM to every file first")
    ap.add_argument("--ztf", action="store_true", help="also serve the files as ZTF images through IRSA's IBE")
    a = ap.parse_args()
    archive = Archive(a.root, a.write_checksums, a.ztf)
    state = State()
    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # A client that hangs up mid-body (a stall timeout, a test that got what it needed) is
            # part of the tests, not a server error.
            if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                return
            super().handle_error(request, client_address)

    server = Server(("127.0.0.1", a.port), make_handler(archive, state))
    server.daemon_threads = True
    port = server.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"archive server on http://127.0.0.1:{port}/ ({len(archive.observations)} observations)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
