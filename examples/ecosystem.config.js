// Runs under both PM2 and sup, unchanged:
//   pm2 start examples/ecosystem.config.js --env production
//   sup start examples/ecosystem.config.js --env production
module.exports = {
  apps: [
    {
      name: 'api',
      script: './app.js',           // relative to cwd
      cwd: __dirname,
      instances: 2,                 // each gets NODE_APP_INSTANCE 0, 1
      env: { PORT: 3000, NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },
      kill_timeout: 3000,
      max_restarts: 10,
      time: true,
    },
    {
      name: 'worker',
      script: './worker.sh',
      cwd: __dirname,
      interpreter: 'bash',
      args: '--queue high',
      autorestart: true,
      restart_delay: 1000,
    },
  ],
};
