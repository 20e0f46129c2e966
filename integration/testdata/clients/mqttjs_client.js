#!/usr/bin/env node
// Drives logbroker with MQTT.js (the mqtt package pinned in package.json).
//
// Usage: node mqttjs_client.js HOST PORT VERSION(4|5) TAG
//
// Runs the checks below against the broker and prints one line per check:
// "ok <name>" or "FAIL <name>: <why>". Exits 1 if any check failed. The Go
// test (integration/clients_test.go) runs it and requires every "ok" line.
'use strict'
const mqtt = require('mqtt')

const [host, port, versionArg, tag] = process.argv.slice(2)
const version = Number(versionArg)
const WAIT = 10000
let failed = false

function report (name, ok, why) {
  if (ok) {
    console.log('ok ' + name)
  } else {
    failed = true
    console.log('FAIL ' + name + ': ' + why)
  }
}

function timeout (what, ms) {
  return new Promise((resolve, reject) => setTimeout(() => reject(new Error('timeout: ' + what)), ms || WAIT))
}

// A recording client: every message and every PUBACK as MQTT.js parsed it.
async function connect (id) {
  const c = mqtt.connect(`mqtt://${host}:${port}`, {
    clientId: id, protocolVersion: version, clean: true, reconnectPeriod: 0, connectTimeout: WAIT
  })
  c.msgs = []
  c.pubacks = []
  c.errors = []
  c.waiters = []
  const wake = () => { for (const w of c.waiters.splice(0)) w() }
  c.on('message', (topic, payload, packet) => { c.msgs.push({ topic, payload, packet }); wake() })
  c.on('packetreceive', (p) => { if (p.cmd === 'puback') { c.pubacks.push(p); wake() } })
  c.on('error', (e) => { c.errors.push(e); wake() })
  c.waitFor = async (what, pred, ms) => {
    const deadline = Date.now() + (ms || WAIT)
    for (;;) {
      const got = pred()
      if (got) return got
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timeout: ' + what + (c.errors.length ? ' (client errors: ' + c.errors.join('; ') + ')' : ''))
      await Promise.race([new Promise((resolve) => c.waiters.push(resolve)), new Promise((resolve) => setTimeout(resolve, left))])
    }
  }
  await Promise.race([new Promise((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) }), timeout('CONNACK')])
  return c
}

async function sub (c, topic) {
  await Promise.race([c.subscribeAsync(topic, { qos: 1 }), timeout('SUBACK ' + topic)])
}

async function pub (c, topic, payload, opts) {
  try {
    await Promise.race([c.publishAsync(topic, payload, Object.assign({ qos: 1 }, opts || {})), timeout('PUBACK on ' + topic)])
  } catch (e) {
    throw new Error(e.message + (c.errors.length ? ' (client errors: ' + c.errors.map((x) => x.message).join('; ') + ')' : ''))
  }
}

function findReply (c, topic, id, start) {
  for (const m of c.msgs.slice(start)) {
    if (m.topic !== topic) continue
    let r
    try { r = JSON.parse(m.payload.toString()) } catch (e) { continue }
    if (r.id === id) return { m, r }
  }
  return null
}

async function call (c, frame, opts) {
  const start = c.msgs.length
  await pub(c, 'logbroker/rpc', JSON.stringify(frame), opts)
  return (await c.waitFor('reply ' + frame.id, () => findReply(c, frame.src + '/rpc', frame.id, start))).r
}

async function check (name, fn) {
  try {
    await fn()
  } catch (e) {
    report(name, false, e.message)
  }
}

async function main () {
  const src = `js${version}-${tag}`
  const a = await connect(src)
  await sub(a, src + '/rpc')
  const b = await connect(src + '-b')
  await sub(b, src + '-b/rpc')

  await check('Log.Log', async () => {
    const r = await call(a, { id: 1, src, method: 'Log.Log', params: { msg: 'from MQTT.js' } })
    report('Log.Log', r.result && typeof r.result.id === 'string', JSON.stringify(r))
  })

  await check('Log.List follow woken by another client', async () => {
    const start = a.msgs.length
    await pub(a, 'logbroker/rpc', JSON.stringify({ id: 2, src, method: 'Log.List', args: { last: 0, follow: true }, timeout: 20 }))
    const deadline = Date.now() + WAIT
    for (let n = 1; Date.now() < deadline; n++) {
      await call(b, { id: 100 + n, src: src + '-b', method: 'Log.Log', args: { src, msg: 'wake ' + n } })
      let got = null
      try {
        got = await a.waitFor('follow answer', () => findReply(a, src + '/rpc', 2, start), 200)
      } catch (e) {
        continue
      }
      const es = got.r.result
      report('Log.List follow woken by another client', Array.isArray(es) && es.length >= 1 && es[0].msg.startsWith('wake'), JSON.stringify(got.r))
      return
    }
    report('Log.List follow woken by another client', false, 'no answer within ' + WAIT + ' ms')
  })

  await check('Log.Delete', async () => {
    const r = await call(a, { id: 3, src, method: 'Log.Delete', params: {} })
    const l = await call(a, { id: 4, src, method: 'Log.List', params: { stream: 'console' } })
    report('Log.Delete', !('error' in r) && !('result' in r) && Array.isArray(l.result) && l.result.length === 0, JSON.stringify([r, l]))
  })

  await check('QoS 1 publish with User Properties', async () => {
    // Its own client: MQTT.js stops on a PUBACK it cannot parse.
    const p = await connect(src + '-p')
    await sub(p, src + '-p/rpc')
    const opts = version === 5 ? { properties: { userProperties: { origin: 'MQTT.js', run: tag } } } : {}
    const frame = { id: 5, src: src + '-p', method: 'Log.Log', args: { msg: 'with user properties' } }
    for (const [topic, payload] of [['logbroker/rpc', JSON.stringify(frame)], [src + '-p/plain', 'plain message']]) {
      const before = p.pubacks.length
      const start = p.msgs.length
      await pub(p, topic, payload, opts)
      const ack = (await p.waitFor('PUBACK for ' + topic, () => p.pubacks.slice(before)))[0]
      // reasonCode 0 (or absent) and no properties copied from the PUBLISH.
      if ((ack.reasonCode !== undefined && ack.reasonCode !== 0) || (ack.properties && Object.keys(ack.properties).length > 0)) {
        report('QoS 1 publish with User Properties', false, 'PUBACK for ' + topic + ': ' + JSON.stringify(ack))
        p.end(true)
        return
      }
      if (topic === 'logbroker/rpc') {
        const got = await p.waitFor('reply 5', () => findReply(p, src + '-p/rpc', 5, start))
        if (!got.r.result) {
          report('QoS 1 publish with User Properties', false, JSON.stringify(got.r))
          return
        }
      }
    }
    await p.endAsync()
    report('QoS 1 publish with User Properties', true)
  })

  if (version === 5) {
    await check('Response Topic with Correlation Data', async () => {
      await sub(a, src + '/answers')
      const corr = Buffer.from([0x63, 0x00, 0xff, 0x31])
      const start = a.msgs.length
      await pub(a, 'logbroker/rpc', JSON.stringify({ id: 6, src, method: 'RPC.Ping' }),
        { properties: { responseTopic: src + '/answers', correlationData: corr } })
      const got = await a.waitFor('reply on the response topic', () => findReply(a, src + '/answers', 6, start))
      const back = got.m.packet.properties && got.m.packet.properties.correlationData
      report('Response Topic with Correlation Data', back && Buffer.compare(back, corr) === 0 && got.r.result,
        'correlation ' + (back && back.toString('hex')) + ', reply ' + JSON.stringify(got.r))
    })
  }

  a.end(true)
  b.end(true)
  process.exit(failed ? 1 : 0)
}

main().catch((e) => { console.log('FAIL setup: ' + e.message); process.exit(1) })
