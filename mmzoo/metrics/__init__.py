"""mmzoo.metrics"""
