// Synthetic files for upload tests: made at run time, never real data.

import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** A random lowercase alphanumeric string. */
export function randomToken(len = 12) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(len);
  let s = '';
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

/** A random passphrase of exactly `len` characters (letters, digits, '-'). */
export function randomPassphrase(len = 20) {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-';
  const bytes = randomBytes(len);
  let s = '';
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

/**
 * A minimal, valid one-page PDF (correct xref offsets) whose page shows
 * `marker`; the marker also appears in the document's /Title.
 */
export function minimalPdf(marker) {
  const esc = (s) => s.replace(/[\\()]/g, (c) => `\\${c}`);
  const stream = `BT /F1 18 Tf 72 720 Td (${esc(marker)}) Tj ET\n`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
    `<< /Length ${Buffer.byteLength(stream, 'latin1')} >>\nstream\n${stream}endstream`,
    `<< /Title (${esc(marker)}) /Producer (keyhold e2e) >>`,
  ];
  let out = '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n';
  const offsets = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** A tiny valid 1x1 PNG (real PNG magic bytes). */
export function tinyPng() {
  return Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
    'base64',
  );
}

/** `size` bytes that start with a PDF header and are otherwise padding. */
export function oversizePdf(size) {
  const buf = Buffer.alloc(size, 0x20);
  buf.write('%PDF-1.4\n% keyhold e2e oversize padding\n', 0, 'latin1');
  buf.write('\n%%EOF\n', size - 7, 'latin1');
  return buf;
}

/** A temp dir for files written by one test file; returns { dir, write(name, bytes), remove() }. */
export async function scratchDir() {
  const dir = await mkdtemp(path.join(tmpdir(), 'keyhold-e2e-files-'));
  return {
    dir,
    async write(name, bytes) {
      const p = path.join(dir, name);
      await writeFile(p, bytes);
      return p;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
