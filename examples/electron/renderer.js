// The window: sends requests through window.llamapro (preload.js) and draws what the worker reports.
const $ = (id) => document.getElementById(id)
const losses = []

function drawLoss() {
  const canvas = $('loss')
  const g = canvas.getContext('2d')
  g.clearRect(0, 0, canvas.width, canvas.height)
  if (losses.length < 2) return
  const max = Math.max(...losses)
  const min = Math.min(...losses)
  g.beginPath()
  losses.forEach((loss, i) => {
    const x = (i / (losses.length - 1)) * (canvas.width - 10) + 5
    const y = canvas.height - 5 - ((loss - min) / (max - min || 1)) * (canvas.height - 10)
    i === 0 ? g.moveTo(x, y) : g.lineTo(x, y)
  })
  g.stroke()
}

window.llamapro.onMessage((message) => {
  if (message.type === 'ready') $('status').textContent = `llamapro ready: LibTorch ${message.libtorch}, addon ${message.addon}`
  else if (message.type === 'train-event') {
    const e = message.event
    if (e.type === 'start') (losses.length = 0), drawLoss()
    if (e.type === 'step') {
      losses.push(e.loss)
      drawLoss()
      $('progress').textContent = `step ${e.step}/${e.totalSteps}, loss ${e.loss.toFixed(4)}`
    }
    if (e.type === 'checkpoint') $('model').value = e.path
  } else if (message.type === 'train-done') {
    const r = message.result
    $('progress').textContent = `${r.aborted ? 'stopped' : 'finished'} at step ${r.globalStep}/${r.totalSteps}; checkpoints: ${r.checkpoints.join(', ') || 'none'}`
    $('train').disabled = false
    $('stop').disabled = true
  } else if (message.type === 'token') $('reply').textContent += message.text
  else if (message.type === 'generate-done') $('generate').disabled = false
  else if (message.type === 'error') {
    $('error').textContent = `${message.during}: ${message.message}`
    $('train').disabled = false
    $('stop').disabled = true
    $('generate').disabled = false
  }
})

$('train').onclick = () => {
  let config
  try {
    config = JSON.parse($('config').value)
  } catch (error) {
    $('error').textContent = `the config is not valid JSON: ${error.message}`
    return
  }
  $('error').textContent = ''
  $('train').disabled = true
  $('stop').disabled = false
  window.llamapro.train(config)
}
$('stop').onclick = () => window.llamapro.stop()
$('generate').onclick = () => {
  $('reply').textContent = ''
  $('generate').disabled = true
  window.llamapro.generate($('model').value, $('prompt').value, 128)
}
