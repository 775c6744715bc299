module ember.local/bench/microservice

go 1.26
