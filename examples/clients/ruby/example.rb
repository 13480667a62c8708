#!/usr/bin/env ruby
# frozen_string_literal: true

# Send and receive through stompd with the `stomp` gem.
#
# Run stompd, then:
#
#   gem install stomp            # or: apt-get install ruby-stomp
#   ruby examples/clients/ruby/example.rb [HOST] [PORT]       # default 127.0.0.1 61613
#
# With auth on, set STOMP_LOGIN and STOMP_PASSCODE. It subscribes to
# /queue/example.ruby with client-individual acks, sends one message with a receipt and a
# custom header, receives and acknowledges it, and disconnects. It prints one line per
# step and "done" at the end; exit status 0 means it all worked.

require 'stomp'
require 'timeout'

host = ARGV[0] || ENV.fetch('STOMP_HOST', '127.0.0.1')
port = Integer(ARGV[1] || ENV.fetch('STOMP_PORT', '61613'))
destination = '/queue/example.ruby'

begin
  Timeout.timeout(15) do
    client = Stomp::Client.new(
      hosts: [{ host: host, port: port,
                login: ENV.fetch('STOMP_LOGIN', ''), passcode: ENV.fetch('STOMP_PASSCODE', '') }],
      connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost', 'heart-beat' => '0,0' },
      reliable: false, # a demo: fail instead of reconnecting forever
      connect_timeout: 5
    )
    puts "connected: server=#{client.connection_frame.headers['server']} " \
         "version=#{client.connection_frame.headers['version']}"

    received = Queue.new
    client.subscribe(destination, id: 'ruby-example', ack: 'client-individual') do |message|
      received << message
    end

    # The receipt arrives once stompd has stored the message.
    stored = Queue.new
    client.publish(destination, 'hello from ruby', 'x-example' => 'ruby') { |receipt| stored << receipt }
    stored.pop
    puts 'sent: hello from ruby (receipt received)'

    message = received.pop
    client.ack(message) # STOMP 1.2: acknowledges with the MESSAGE's `ack` header
    puts "received: #{message.body} (x-example=#{message.headers['x-example']}, acked)"

    client.close
    puts 'done'
  end
rescue Timeout::Error
  warn 'example.rb: timed out'
  exit 1
rescue StandardError => e
  warn "example.rb: #{e.class}: #{e.message}"
  exit 1
end
