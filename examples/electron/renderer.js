// The window: sends requests through window.llamapro (preload.js), shows progress and the board's page.
const $ = (id) => document.getElementById(id)
window.llamapro.onMessage((message) => {
  if (message.type === 'board') {
    // The curves, eval losses and layer gradients of the run: the board draws them, live, in the frame.
    $('board').src = message.url
    $('board').hidden = false
  } else if (message.type === 'ready')
    $('status').textContent = `llamapro ready: LibTorch ${message.libtorch}, addon ${message.addon}`
  else if (message.type === 'train-event') {
    const e = message.event
    if (e.type === 'step') $('progress').textContent = `step ${e.step}/${e.totalSteps}, loss ${e.loss.toFixed(4)}`
    if (e.type === 'checkpoint') $('model').value = e.path
  } else if (message.type === 'train-done') {
    const r = message.result
    $('progress').textContent =
      `${r.aborted ? 'stopped' : 'finished'} at step ${r.globalStep}/${r.totalSteps}; checkpoints: ` +
      `${r.checkpoints.join(', ') || 'none'}`
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
